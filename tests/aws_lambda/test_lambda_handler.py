"""The Lambda handler's dispatch, in process: which event goes where, and what a failure returns.

tests/aws_lambda/test_lambda_rie.py runs the same handler under the real runtime; these cover the
branches that need a job runner that fails on demand, and the stage/base-path rules.
"""

import json
import logging
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from mangum import Mangum
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatserver.aws_lambda.dispatch import Dispatcher, UnsupportedEvent
from chatserver.aws_lambda.events import event_kind
from chatserver.aws_lambda.gateways import CUSTOM_HANDLERS
from chatserver.jobs.s3 import ObjectCreated
from emulation.events import load_event, s3_put_event, sqs_event

CONTEXT = SimpleNamespace(
    aws_request_id="req-1234", function_name="chatserver", get_remaining_time_in_millis=lambda: 60_000
)


@pytest.fixture(scope="module")
def lambda_handler() -> ModuleType:
    # Importing the handler is Lambda's init: it loads the engine (cached per process) and
    # configures logging for Lambda; pytest's own logging setup is put back afterwards.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        import chatserver.aws_lambda.handler as module
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return module


def function_url_event(method: str, path: str) -> dict[str, Any]:
    """A Function URL event: payload 2.0, stage $default, a lambda-url domain, no stage in the path."""
    event = load_event("api-v2.json")
    event.update(routeKey="$default", rawPath=path, body=None, isBase64Encoded=False)
    event["headers"] = {"host": "abc123.lambda-url.eu-west-1.on.aws", "x-forwarded-proto": "https"}
    event["requestContext"].update(
        routeKey="$default", stage="$default", domainName="abc123.lambda-url.eu-west-1.on.aws"
    )
    event["requestContext"]["http"].update(method=method, path=path)
    return event


class FakeRunner:
    """Stands in for the job runner (tests/jobs/test_jobs.py runs the real one): records what it got."""

    def __init__(self, failing_keys: set[str]) -> None:
        self.failing_keys = failing_keys
        self.handled: list[str] = []

    def handle(self, upload: ObjectCreated) -> None:
        key = upload.key
        if key in self.failing_keys:
            raise ConnectionError(f"S3 is unreachable for {key}")
        self.handled.append(key)


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (load_event("api-v1.json"), "http"),
        (load_event("api-v2.json"), "http"),
        (function_url_event("GET", "/health"), "http"),
        (load_event("s3-put.json"), "s3"),
        (load_event("sqs-s3-put.json"), "sqs"),
        ({"hello": "world"}, "unknown"),
        ({"Records": []}, "unknown"),
        ({"Records": [{"eventSource": "aws:dynamodb"}]}, "unknown"),
        ({"source": "aws.events", "detail-type": "Scheduled Event"}, "unknown"),
        ([1, 2, 3], "unknown"),
    ],
)
def test_event_kinds(event: Any, kind: str) -> None:
    assert event_kind(event).value == kind


def test_function_url_event_reaches_the_app(lambda_handler: ModuleType) -> None:
    result = lambda_handler.handler(function_url_event("GET", "/health"), CONTEXT)
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["status"] == "ok"
    assert result["headers"]["x-request-id"] == "req-1234"


def test_unknown_route_is_the_apps_404(lambda_handler: ModuleType) -> None:
    result = lambda_handler.handler(function_url_event("GET", "/nowhere"), CONTEXT)
    assert result["statusCode"] == 404
    assert json.loads(result["body"])["error"]["request_id"] == "req-1234"


def _echo_app() -> Starlette:
    async def where(request: Request) -> JSONResponse:
        return JSONResponse({"url": str(request.url_for("where")), "root_path": request.scope["root_path"]})

    return Starlette(routes=[Route("/jobs", where, name="where")])


@pytest.mark.parametrize(
    ("event_name", "raw_path", "stage", "base_path", "url"),
    [
        # HTTP API, named stage: in the path, routed without it, kept in URLs the app builds.
        (
            "api-v2.json",
            "/prod/jobs",
            "prod",
            "/",
            "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/prod/jobs",
        ),
        # HTTP API, $default stage: nothing to strip.
        (
            "api-v2.json",
            "/jobs",
            "$default",
            "/",
            "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/jobs",
        ),
        # HTTP API behind a custom domain with a base path mapping (settings.api_base_path).
        (
            "api-v2.json",
            "/v1/jobs",
            "$default",
            "/v1",
            "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/v1/jobs",
        ),
        # REST API: path lacks the stage, requestContext.path has it.
        (
            "api-v1.json",
            "/jobs",
            "Prod",
            "/",
            "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/Prod/jobs",
        ),
    ],
)
def test_stage_and_base_path_are_routed_and_kept_in_urls(
    event_name: str, raw_path: str, stage: str, base_path: str, url: str
) -> None:
    event = load_event(event_name) | {"body": None, "isBase64Encoded": False}
    context = event["requestContext"]
    context["stage"] = stage
    if event_name == "api-v2.json":
        event["rawPath"] = raw_path
        context["http"].update(method="GET", path=raw_path)
    else:
        event.update(path=raw_path, httpMethod="GET", resource=raw_path)
        context["path"] = f"/{stage}{raw_path}"
        event["multiValueHeaders"] = {}
    adapter = Mangum(
        _echo_app(),
        lifespan="off",
        api_gateway_base_path=base_path,
        custom_handlers=CUSTOM_HANDLERS,
    )
    result = adapter(event, CONTEXT)
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["url"] == url


def dispatcher(runner: FakeRunner, worker: "FakeChunkWorker | None" = None) -> Dispatcher:
    """The handler built from stand-ins: no model, no S3, no HTTP app."""

    def no_http(event: Any, context: Any) -> Any:
        raise AssertionError("no HTTP event was sent")

    return Dispatcher(no_http, lambda: runner, lambda: worker or FakeChunkWorker(failing_index=-1))


def test_s3_event_failure_raises_for_a_lambda_retry(caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeRunner({"uploads/broken.webm"})
    handler = dispatcher(runner)
    event = s3_put_event("bucket", "uploads/broken.webm", 10)
    with pytest.raises(ConnectionError), caplog.at_level(logging.ERROR):
        handler(event, CONTEXT)
    assert any("uploads/broken.webm" in record.getMessage() for record in caplog.records)
    # The key is decoded for the log (S3 sends '+' for spaces) and a good record goes through.
    ok = s3_put_event("bucket", "uploads/voice+note.webm", 10)
    assert handler(ok, CONTEXT) == {"records": 1}
    assert runner.handled == ["uploads/voice note.webm"]


def test_sqs_batch_reports_only_the_failed_messages() -> None:
    runner = FakeRunner({"uploads/down.webm"})
    good = s3_put_event("bucket", "uploads/a.webm", 10)
    bad = s3_put_event("bucket", "uploads/down.webm", 10)
    through_sns = {
        "Type": "Notification",
        "Message": json.dumps(s3_put_event("bucket", "uploads/b.webm", 10)),
    }
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "bucket"}
    event = sqs_event(
        {
            "m1": json.dumps(good),
            "m2": json.dumps(bad),
            "m3": json.dumps(through_sns),
            "m4": json.dumps(test_event),
        }
    )
    assert dispatcher(runner)(event, CONTEXT) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert runner.handled == ["uploads/a.webm", "uploads/b.webm"]


def test_unknown_event_is_refused_with_a_log_line(
    lambda_handler: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(UnsupportedEvent, match="hello"), caplog.at_level(logging.ERROR):
        lambda_handler.handler({"hello": "world", "secret": "not logged"}, CONTEXT)
    (record,) = [r for r in caplog.records if r.name == "chatserver.aws_lambda.dispatch"]
    assert "unknown shape" in record.getMessage()
    assert "not logged" not in record.getMessage()  # keys only, never values
    # The next event is served as usual.
    assert lambda_handler.handler(function_url_event("GET", "/health"), CONTEXT)["statusCode"] == 200


class FakeChunkWorker:
    """Stands in for the chunk worker (tests/*/test_fanout*.py run the real one): records what it got."""

    def __init__(self, failing_index: int) -> None:
        self.failing_index = failing_index
        self.handled: list[tuple[int, int]] = []

    def handle(self, message: Any, receive_count: int = 1) -> None:
        if message.index == self.failing_index:
            raise ConnectionError(f"S3 is unreachable for chunk {message.index}")
        self.handled.append((message.index, receive_count))


def _chunk_body(index: int) -> str:
    from chatserver.jobs.documents import JobOptions, Source
    from chatserver.jobs.fanout import ChunkMessage

    source = Source(bucket="bucket", key="uploads/long.webm", etag="abc", size=10)
    return ChunkMessage(
        bucket="bucket",
        key=source.key,
        source=source,
        options=JobOptions(),
        language="fr",
        created_at="2026-01-01T00:00:00Z",
        started_at="2026-01-01T00:00:01Z",
        work="work/long.webm/abc.auto/",
        index=index,
        start=180.0 * index,
        end=180.0 * (index + 1),
        count=3,
        duration=540.0,
    ).model_dump_json()


def test_chunk_messages_go_to_the_chunk_worker_with_their_delivery_count() -> None:
    runner = FakeRunner(set())
    worker = FakeChunkWorker(failing_index=1)
    event = sqs_event(
        {
            "c0": _chunk_body(0),
            "c1": _chunk_body(1),
            "s3": json.dumps(s3_put_event("bucket", "uploads/short.webm", 10)),
        }
    )
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"
    answer = dispatcher(runner, worker)(event, CONTEXT)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "c1"}]}
    assert worker.handled == [(0, 3)]
    assert runner.handled == ["uploads/short.webm"]
