"""Lambda events as typed records: which kind an event is, and the uploads and messages it carries.

S3 ObjectCreated notifications reach the function directly, or inside SQS messages (raw or
wrapped by SNS); the chunk queue's messages carry a ``ChunkMessage``. Each record is parsed
here once; the jobs side only ever sees the typed records.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import unquote_plus

from ..jobs.fanout import ChunkMessage, parse_chunk_message
from ..jobs.s3 import ObjectCreated, bare_etag

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class S3Record:
    """One S3 notification record: the upload it announces, or None for any other record."""

    upload: ObjectCreated | None
    raw: dict[str, Any]

    @property
    def key(self) -> str:
        """The object key for log lines, even of a record that is not an upload."""
        if self.upload is not None:
            return self.upload.key
        return str(self.raw.get("s3", {}).get("object", {}).get("key", "?"))


@dataclass(frozen=True)
class SqsMessage:
    """One SQS message: a chunk of a fanned-out job, or S3 notifications."""

    message_id: str
    receive_count: int
    chunk: ChunkMessage | None
    records: list[S3Record]


def parse_record(record: dict[str, Any]) -> ObjectCreated | None:
    """The object of one S3 ObjectCreated record; None for any other record."""
    if record.get("eventSource", "aws:s3") != "aws:s3":
        return None
    if not str(record.get("eventName", "ObjectCreated:")).startswith("ObjectCreated:"):
        return None
    try:
        bucket = record["s3"]["bucket"]["name"]
        obj = record["s3"]["object"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError):
        return None
    etag = obj.get("eTag")
    return ObjectCreated(bucket, key, bare_etag(etag) if etag else None, obj.get("size"))


def s3_records(event: dict[str, Any]) -> Iterator[S3Record]:
    """The S3 records of a direct S3 event, or of the S3 events in an SQS batch (raw or via SNS).

    ``s3:TestEvent`` messages (sent when a notification is configured) hold no records.
    """
    for record in event.get("Records") or []:
        if record.get("eventSource") == "aws:sqs":
            yield from s3_records(_json_object(record.get("body")))
        elif record.get("EventSource") == "aws:sns" or "Sns" in record:
            yield from s3_records(_json_object(record.get("Sns", {}).get("Message")))
        elif record.get("eventSource") == "aws:s3":
            yield S3Record(parse_record(record), record)
    if event.get("Event") == "s3:TestEvent":
        logger.info("ignoring s3:TestEvent for bucket %s", event.get("Bucket"))
    # An SNS envelope delivered to SQS without raw message delivery.
    if event.get("Type") == "Notification" and "Message" in event:
        yield from s3_records(_json_object(event["Message"]))


def sqs_message(message: dict[str, Any]) -> SqsMessage:
    chunk = parse_chunk_message(message.get("body"))
    return SqsMessage(
        message_id=message.get("messageId", ""),
        receive_count=_receive_count(message),
        chunk=chunk,
        records=[] if chunk is not None else list(s3_records({"Records": [message]})),
    )


def _receive_count(message: dict[str, Any]) -> int:
    try:
        return int(message.get("attributes", {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        logger.warning("ignoring a message body that is not JSON: %.200s", text)
        return {}
    return value if isinstance(value, dict) else {}
