"""The AWS Lambda entry point: ``chatserver.aws_lambda.handler.handler``, one function for every event.

Everything expensive happens at import, in Lambda's init phase, once per execution
environment: settings, logging, the engine with its model, the FastAPI app and its Mangum
adapter. Each invocation then only dispatches its event:

- API Gateway REST (payload 1.0), HTTP API (2.0) and Function URL events go to the FastAPI
  app through Mangum, with the ASGI lifespan off (Mangum would run it on every invocation).
- S3 ObjectCreated notifications go to the job runner. A failure raises, so Lambda retries
  the asynchronous event and finally hands it to the on-failure destination.
- SQS messages that wrap S3 notifications (directly or through SNS) go to the job runner one
  message at a time; the messages that failed are returned as ``batchItemFailures`` so that
  only they come back (the event source mapping needs ``ReportBatchItemFailures``).
- SQS messages of the chunk queue (a long upload fanned out, fanout.py) go to the chunk
  worker, reported the same way; the chunk queue's mapping has batch size 1.
- Anything else is refused with a log line and an ``UnsupportedEvent`` error; the runtime
  itself carries on with the next invocation.
"""

import logging
import os
import time
from collections.abc import Callable
from enum import Enum
from functools import cache
from typing import Any
from urllib.parse import unquote

from mangum import Mangum
from mangum.handlers import APIGateway, HTTPGateway
from mangum.types import Scope

from ..api.app import create_app
from ..core.logs import configure_logging, object_key, request_id
from ..core.settings import get_settings
from ..jobs.chunk_worker import ChunkWorker
from ..jobs.fanout import ChunkMessage, parse_chunk_message
from ..jobs.runner import JobRunner
from ..speech.service import TranscriptionService
from .events import parse_record, s3_records

logger = logging.getLogger(__name__)


class UnsupportedEvent(ValueError):
    """An event this function was not built for: not API Gateway, Function URL, S3 or SQS."""


class EventKind(Enum):
    HTTP = "http"
    S3 = "s3"
    SQS = "sqs"
    UNKNOWN = "unknown"


def event_kind(event: Any) -> EventKind:
    if not isinstance(event, dict):
        return EventKind.UNKNOWN
    if isinstance(event.get("requestContext"), dict) and (
        "httpMethod" in event or event.get("version") == "2.0"
    ):
        return EventKind.HTTP
    records = event.get("Records")
    if isinstance(records, list) and records and all(isinstance(r, dict) for r in records):
        sources = {record.get("eventSource") for record in records}
        if sources == {"aws:s3"}:
            return EventKind.S3
        if sources == {"aws:sqs"}:
            return EventKind.SQS
    return EventKind.UNKNOWN


def _with_prefix(scope: Scope, full_path: str) -> Scope:
    """Give the app the path the client used, with the API's prefix (a stage) as root_path.

    That is the ASGI convention Starlette follows: it routes on ``path`` less ``root_path``
    (so ``/transcribe`` matches under any stage) and builds URLs, such as the ``status_url``
    of POST /jobs, from the full path, so they carry the stage the client called.
    """
    route = scope["path"]
    prefix = full_path[: -len(route)] if route and full_path.endswith(route) else ""
    if prefix.startswith("/") and not prefix.endswith("/"):
        scope["path"] = full_path
        scope["root_path"] = prefix
    return scope


class _StageAwareHTTPGateway(HTTPGateway):
    """HTTP API and Function URL events (payload 2.0).

    A named HTTP API stage is part of the path (``/prod/transcribe``); ``$default`` and
    Function URLs have none.
    """

    @classmethod
    def infer(cls, event: Any, context: Any, config: Any) -> bool:
        return event.get("version") == "2.0" and "requestContext" in event

    @property
    def scope(self) -> Scope:
        scope = super().scope
        stage = self.event["requestContext"].get("stage") or "$default"
        path = scope["path"]
        prefix = f"/{stage}"
        if stage != "$default" and (path == prefix or path.startswith(f"{prefix}/")):
            # Starlette routes on path less root_path: /prod/transcribe -> /transcribe.
            scope["root_path"] = prefix
            scope["path"] = path if path != prefix else f"{prefix}/"
            return scope
        # A custom domain's base path mapping, stripped by Mangum (settings.api_base_path).
        raw_path = unquote(self.event.get("rawPath") or "")
        return _with_prefix(scope, raw_path) if raw_path != path else scope


class _StageAwareRestGateway(APIGateway):
    """REST API events (payload 1.0): ``path`` lacks the stage that ``requestContext.path`` has."""

    @property
    def scope(self) -> Scope:
        scope = super().scope
        client_path = unquote(self.event["requestContext"].get("path") or "")
        return _with_prefix(scope, client_path) if client_path != scope["path"] else scope


# Tried before Mangum's own handlers; ALB and Lambda@Edge events still reach those.
CUSTOM_HANDLERS: list[type] = [_StageAwareHTTPGateway, _StageAwareRestGateway]


def _in_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


# --- init: once per execution environment ---------------------------------------------------
settings = get_settings()
configure_logging(settings.log_level, settings.log_json or _in_lambda())
_init_started = time.perf_counter()
service = TranscriptionService.from_settings(settings)
app = create_app(settings, service)
asgi = Mangum(
    app,
    lifespan="off",
    api_gateway_base_path=settings.api_base_path,
    custom_handlers=CUSTOM_HANDLERS,
)
# Mangum logs every request at INFO; the access log (middleware.RequestContext) says more.
logging.getLogger("mangum.http").setLevel(logging.WARNING)
_init_s = time.perf_counter() - _init_started
logger.info(
    "engine, model and app ready in %.2f s: engine %s, model %s",
    _init_s,
    service.engine.name,
    service.engine.model,
    extra={"time_s": round(_init_s, 3)},
)


@cache
def job_runner() -> JobRunner:
    # Built on the first S3 or SQS event rather than at init: a function that only serves the
    # API never creates an S3 client, and S3 work is asynchronous, so its first call can wait.
    return JobRunner(service, settings)


@cache
def chunk_worker() -> ChunkWorker:
    return ChunkWorker(job_runner())


# --- dispatch ---------------------------------------------------------------------------------
def handler(event: Any, context: Any) -> Any:
    """The Lambda handler: the image's CMD."""
    token = request_id.set(getattr(context, "aws_request_id", None) or "-")
    try:
        kind = event_kind(event)
        if kind is EventKind.HTTP:
            return asgi(event, context)
        if kind is EventKind.S3:
            return _handle_s3(event["Records"])
        if kind is EventKind.SQS:
            return _handle_sqs(event["Records"])
        raise _refuse(event)
    finally:
        request_id.reset(token)


def _refuse(event: Any) -> UnsupportedEvent:
    # Keys only: the event itself may be large or hold data that does not belong in logs.
    shape = sorted(str(key) for key in event)[:20] if isinstance(event, dict) else type(event).__name__
    logger.error(
        "refusing an event of unknown shape (top-level keys: %s): this function handles API "
        "Gateway REST/HTTP API, Function URL, S3 ObjectCreated, SQS-wrapped S3 and chunk queue events",
        shape,
        extra={"event_shape": shape},
    )
    return UnsupportedEvent(
        f"unsupported event (top-level keys: {shape}); expected an API Gateway, Function URL, S3 or SQS event"
    )


def _handle_s3(records: list[dict[str, Any]]) -> dict[str, int]:
    runner = job_runner()
    for record in records:
        # Raises on a transient error: Lambda then retries the whole event (the runner skips
        # records that are already done) and finally sends it to the on-failure destination.
        _run_record(runner.handle_record, record)
    return {"records": len(records)}


def _handle_sqs(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    runner = job_runner()
    failures: list[dict[str, str]] = []
    for message in messages:
        message_id = message.get("messageId", "")
        try:
            if (chunk := parse_chunk_message(message.get("body"))) is not None:
                _run_chunk(chunk, _receive_count(message))
                continue
            for record in s3_records({"Records": [message]}):
                _run_record(runner.handle_record, record)
        except Exception as exc:
            # The traceback is already logged under the object key; this says what SQS is told.
            logger.warning("SQS message %s failed (%s); reporting it for redelivery", message_id, exc)
            failures.append({"itemIdentifier": message_id})
    if failures:
        logger.warning("%d of %d SQS messages failed", len(failures), len(messages))
    return {"batchItemFailures": failures}


def _run_record(handle: Callable[[dict[str, Any]], None], record: dict[str, Any]) -> None:
    created = parse_record(record)
    key = created.key if created else str(record.get("s3", {}).get("object", {}).get("key", "?"))
    token = object_key.set(key)
    started = time.perf_counter()
    try:
        handle(record)
    except Exception:
        elapsed = time.perf_counter() - started
        logger.exception("object %s failed after %.2f s", key, elapsed, extra={"time_s": round(elapsed, 3)})
        raise
    else:
        elapsed = time.perf_counter() - started
        logger.info("object %s handled in %.2f s", key, elapsed, extra={"time_s": round(elapsed, 3)})
    finally:
        object_key.reset(token)


def _receive_count(message: dict[str, Any]) -> int:
    try:
        return int(message.get("attributes", {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def _run_chunk(chunk: ChunkMessage, receive_count: int) -> None:
    token = object_key.set(chunk.key)
    started = time.perf_counter()
    try:
        chunk_worker().handle(chunk, receive_count)
    except Exception:
        elapsed = time.perf_counter() - started
        logger.exception(
            "object %s %s failed after %.2f s (delivery %d)",
            chunk.key,
            chunk.span,
            elapsed,
            receive_count,
            extra={"time_s": round(elapsed, 3)},
        )
        raise
    else:
        elapsed = time.perf_counter() - started
        logger.info(
            "object %s %s handled in %.2f s",
            chunk.key,
            chunk.span,
            elapsed,
            extra={"time_s": round(elapsed, 3), "chunk_index": chunk.index},
        )
    finally:
        object_key.reset(token)
