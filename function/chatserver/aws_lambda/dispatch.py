"""Which part of the function an event goes to, and what Lambda is told when that part fails.

- API Gateway REST (payload 1.0), HTTP API (2.0) and Function URL events go to the HTTP app.
- S3 ObjectCreated notifications go to the job runner. A failure raises, so Lambda retries
  the asynchronous event and finally hands it to the on-failure destination.
- SQS messages that wrap S3 notifications (directly or through SNS) go to the job runner one
  message at a time; the messages that failed are returned as ``batchItemFailures`` so that
  only they come back (the event source mapping needs ``ReportBatchItemFailures``).
- SQS messages of the chunk queue (a long upload fanned out) go to the chunk worker, reported
  the same way; the chunk queue's mapping has batch size 1.
- Anything else is refused with a log line and an ``UnsupportedEvent`` error; the runtime
  itself carries on with the next invocation.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from ..core.invocation import invocation_deadline
from ..core.logs import object_key, request_id
from ..jobs.fanout import ChunkMessage
from ..jobs.s3 import ObjectCreated
from .events import EventKind, S3Record, event_kind, s3_records, sqs_message

logger = logging.getLogger(__name__)


class UnsupportedEvent(ValueError):
    """An event this function was not built for: not API Gateway, Function URL, S3 or SQS."""


class Runner(Protocol):
    def handle(self, upload: ObjectCreated) -> None: ...


class ChunkHandler(Protocol):
    def handle(self, message: ChunkMessage, receive_count: int = 1) -> None: ...


class Dispatcher:
    """The Lambda handler, built from its parts: the HTTP handler, and the job runner and chunk
    worker, which are asked for on the first event that needs them (``runner()``)."""

    def __init__(
        self,
        http: Callable[[Any, Any], Any],
        runner: Callable[[], Runner],
        chunk_worker: Callable[[], ChunkHandler],
    ) -> None:
        self.http = http
        self.runner = runner
        self.chunk_worker = chunk_worker

    def __call__(self, event: Any, context: Any) -> Any:
        token = request_id.set(getattr(context, "aws_request_id", None) or "-")
        # Work that must end with the invocation (a job's callback retries) reads this.
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        deadline = invocation_deadline.set(time.monotonic() + remaining() / 1000 if remaining else None)
        try:
            kind = event_kind(event)
            if kind is EventKind.HTTP:
                return self.http(event, context)
            if kind is EventKind.S3:
                return self._s3(event)
            if kind is EventKind.SQS:
                return self._sqs(event["Records"])
            raise _refuse(event)
        finally:
            invocation_deadline.reset(deadline)
            request_id.reset(token)

    def _s3(self, event: dict[str, Any]) -> dict[str, int]:
        records = list(s3_records(event))
        for record in records:
            # Raises on a transient error: Lambda then retries the whole event (the runner skips
            # records that are already done) and finally sends it to the on-failure destination.
            self._upload(record)
        return {"records": len(records)}

    def _sqs(self, messages: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
        failures: list[dict[str, str]] = []
        for raw in messages:
            message = sqs_message(raw)
            try:
                if message.chunk is not None:
                    chunk = message.chunk
                    with _timed(chunk.key, f"{chunk.span}", message.receive_count, chunk_index=chunk.index):
                        self.chunk_worker().handle(chunk, message.receive_count)
                for record in message.records:
                    self._upload(record)
            except Exception as exc:
                # The traceback is already logged under the object key; this says what SQS is told.
                logger.warning(
                    "SQS message %s failed (%s); reporting it for redelivery", message.message_id, exc
                )
                failures.append({"itemIdentifier": message.message_id})
        if failures:
            logger.warning("%d of %d SQS messages failed", len(failures), len(messages))
        return {"batchItemFailures": failures}

    def _upload(self, record: S3Record) -> None:
        with _timed(record.key):
            if record.upload is None:
                logger.warning("ignoring a record that is not an S3 ObjectCreated record: %.300s", record.raw)
                return
            self.runner().handle(record.upload)


@contextmanager
def _timed(key: str, what: str = "", delivery: int | None = None, **fields: Any) -> Iterator[None]:
    """Log lines tagged with the object key, and one line with the outcome and the time it took."""
    token = object_key.set(key)
    started = time.perf_counter()
    label = f"object {key} {what}".rstrip()
    try:
        yield
    except Exception:
        elapsed = time.perf_counter() - started
        attempt = f" (delivery {delivery})" if delivery is not None else ""
        logger.exception(
            "%s failed after %.2f s%s", label, elapsed, attempt, extra={"time_s": round(elapsed, 3)}
        )
        raise
    else:
        elapsed = time.perf_counter() - started
        logger.info("%s handled in %.2f s", label, elapsed, extra={"time_s": round(elapsed, 3), **fields})
    finally:
        object_key.reset(token)


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
