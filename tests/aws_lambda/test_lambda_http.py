"""The Lambda path over HTTP (infra/emulation/gateway.py): real HTTP in, API Gateway REST events
through the real Runtime Interface Emulator, the proxy response written back.

One server (one execution environment) serves the module; the model loads once, at init.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cfnlint.decode import decode

from chatserver.api.routes.page import LAMBDA_MAX_UPLOAD_BYTES
from emulation import events, gateway, runtimes
from tests.support import REPO
from tests.support.corpus import clip, wer
from tests.support.servers import require_emulator

pytestmark = pytest.mark.emulator

JFK = clip("jfk.flac")

require_emulator()

# Greedy decoding: these tests are about the HTTP <-> event translation, not accuracy.
FUNCTION_ENV = {"CHATSERVER_BEAM_SIZE": "1", "CHATSERVER_LOG_JSON": "true"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("lambda-http") / "rie.log"
    with gateway.lambda_http_server(stage="Prod", env=FUNCTION_ENV, log=log, timeout_s=120) as url:
        yield url


def test_transcribe_under_the_stage_returns_the_words(api: str) -> None:
    assert api.endswith("/Prod")
    with JFK.path.open("rb") as audio:
        response = httpx.post(f"{api}/transcribe", files={"file": ("jfk.flac", audio)}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "en"
    assert wer(JFK.reference, body["transcript"]) < 0.1, body
    assert "ask not what your country can do for you" in body["transcript"].lower()
    # Headers as the app set them (through Mangum's multiValueHeaders), and API Gateway's own.
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    assert response.headers["x-amzn-requestid"]


def test_the_app_sees_the_stage_as_its_root_path(api: str) -> None:
    # The app builds URLs from the path the client used: the OpenAPI schema's server and the
    # jobs' status_url carry /Prod without the app being told about it.
    response = httpx.get(f"{api}/openapi.json", timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["servers"] == [{"url": "/Prod"}]
    assert httpx.get(f"{api}/health", timeout=60).json()["status"] == "ok"


def test_paths_outside_the_stage_get_api_gateways_403(api: str) -> None:
    outside = api.removesuffix("/Prod")
    for path in ("/health", "/Production/health", "/"):
        response = httpx.get(f"{outside}{path}", timeout=10)
        assert response.status_code == 403, (path, response.text)
        assert response.json() == {"message": "Forbidden"}


def test_app_errors_keep_their_status_and_body(api: str) -> None:
    not_audio = httpx.post(
        f"{api}/transcribe", files={"file": ("notes.txt", b"just some text, not audio")}, timeout=60
    )
    assert not_audio.status_code == 415, not_audio.text
    assert not_audio.json()["error"]["type"] == "unsupported_media"

    with JFK.path.open("rb") as audio:
        language = httpx.post(
            f"{api}/transcribe", files={"file": ("jfk.flac", audio)}, data={"language": "klingon"}, timeout=60
        )
    assert language.status_code == 400, language.text
    assert language.json()["error"]["type"] == "unknown_language"
    assert "klingon" in language.json()["error"]["message"]

    no_bucket = httpx.post(f"{api}/jobs", timeout=60)
    assert no_bucket.status_code == 501, no_bucket.text

    unknown = httpx.get(f"{api}/no-such-route", params={"a": "1"}, timeout=60)
    assert unknown.status_code == 404, unknown.text


def test_bodies_over_api_gateways_limits_are_refused_before_the_function(api: str) -> None:
    # Under API Gateway's 10 MB, over Lambda's 6 MB invocation payload once base64-encoded.
    big = b"\0" * (5 * 1024 * 1024)
    response = httpx.post(f"{api}/transcribe", files={"file": ("big.wav", big)}, timeout=60)
    assert response.status_code == 413, response.text
    # API Gateway's own body, not the app's {"error": ...}: the function never ran.
    assert response.json() == {"message": "Request Too Long"}
    huge = httpx.post(f"{api}/transcribe", files={"file": ("huge.wav", big * 3)}, timeout=60)
    assert huge.status_code == 413, huge.text


def test_the_pages_upload_limit_is_the_largest_body_that_reaches_the_function(api: str) -> None:
    # /config tells the page the synchronous limit through API Gateway: a body of exactly that
    # size still reaches the app (whose answer is its own 415 for these non-audio bytes).
    limit = httpx.get(f"{api}/config", timeout=60).json()["max_upload_bytes"]
    assert limit == LAMBDA_MAX_UPLOAD_BYTES
    response = httpx.post(f"{api}/transcribe", files={"file": ("x.wav", b"\0" * limit)}, timeout=120)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["type"] == "unsupported_media"


def test_config_offers_no_live_dictation_through_api_gateway(api: str) -> None:
    """API Gateway's REST API cannot hold a WebSocket: the page is told not to show Live."""
    config = httpx.get(f"{api}/config", timeout=60).json()
    assert (config["live"], config["live_max_session_s"]) == (False, None)


def test_events_have_the_shape_of_api_gateways_sample() -> None:
    sample = events.load_event("api-v1.json")
    event = gateway.rest_event(
        method="POST",
        target="/Prod/jobs/a%20b?x=1&x=2&y=",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("Content-Type", "multipart/form-data; boundary=b"),
            ("X-A", "1"),
            ("X-A", "2"),
        ],
        body=b"--b--\r\n",
        stage="Prod",
    )
    assert event is not None
    assert event.keys() == sample.keys()
    assert sample["requestContext"].keys() <= event["requestContext"].keys()
    assert event["path"] == "/jobs/a b"  # decoded, without the stage
    assert event["requestContext"]["path"] == "/Prod/jobs/a%20b"  # as sent, with it
    assert event["requestContext"]["stage"] == "Prod"
    assert event["headers"]["X-A"] == "2"
    assert event["multiValueHeaders"]["X-A"] == ["1", "2"]
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["isBase64Encoded"] is True
    text = gateway.rest_event(
        method="POST",
        target="/Prod/x",
        headers=[("Content-Type", "application/json")],
        body=b'{"a": 1}',
        stage="Prod",
    )
    assert text is not None
    assert (text["body"], text["isBase64Encoded"]) == ('{"a": 1}', False)
    assert gateway.rest_event(method="GET", target="/Prodx", headers=[], body=b"", stage="Prod") is None


def test_proxy_responses_merge_headers_as_api_gateway_does() -> None:
    status, headers, body = gateway.response_parts(
        {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "X-One": "from headers"},
            "multiValueHeaders": {"x-one": ["a", "b"], "set-cookie": ["c=1", "d=2"]},
            "body": "aGk=",
            "isBase64Encoded": True,
        }
    )
    assert (status, body) == (201, b"hi")
    assert sorted(headers) == [
        ("content-type", "text/plain"),
        ("set-cookie", "c=1"),
        ("set-cookie", "d=2"),
        ("x-one", "a"),
        ("x-one", "b"),
    ]
    with pytest.raises(ValueError, match="not a proxy response"):
        gateway.response_parts({"errorMessage": "Task timed out", "errorType": "TimeoutError"})


def test_binary_media_types_are_the_templates() -> None:
    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors, errors
    (api,) = (r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Api")
    listed = {media_type.replace("~1", "/") for media_type in api["Properties"]["BinaryMediaTypes"]}
    assert listed == set(gateway.BINARY_MEDIA_TYPES)


def test_lambda_local_http_mode_serves_until_stopped(tmp_path: Path) -> None:
    port = runtimes.free_port()
    log = tmp_path / "lambda_local.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "infra" / "lambda_local.py"), "--http", str(port), "--stage", "dev"],
            env={**os.environ, **FUNCTION_ENV},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/dev/health", timeout=60)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert response.json()["ready"] is True
        assert "GET /dev/health -> 200" in log.read_text()
    finally:
        runtimes.stop_process_group(process)
    # Stopped by its process group: the emulator and the runtime it started are gone too.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
