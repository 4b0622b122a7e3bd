"""S3 ObjectCreated notifications, as they reach the function: direct, or inside SQS and SNS."""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str  # decoded: S3 sends keys URL-encoded with '+' for spaces
    etag: str | None
    size: int | None


def bare_etag(etag: str) -> str:
    return etag.strip('"')


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


def s3_records(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The S3 records of a direct S3 event, or of the S3 events in an SQS batch (raw or via SNS).

    ``s3:TestEvent`` messages (sent when a notification is configured) hold no records.
    """
    for record in event.get("Records") or []:
        if record.get("eventSource") == "aws:sqs":
            yield from s3_records(_json_object(record.get("body")))
        elif record.get("EventSource") == "aws:sns" or "Sns" in record:
            yield from s3_records(_json_object(record.get("Sns", {}).get("Message")))
        elif record.get("eventSource") == "aws:s3":
            yield record
    if event.get("Event") == "s3:TestEvent":
        logger.info("ignoring s3:TestEvent for bucket %s", event.get("Bucket"))
    # An SNS envelope delivered to SQS without raw message delivery.
    if event.get("Type") == "Notification" and "Message" in event:
        yield from s3_records(_json_object(event["Message"]))


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        logger.warning("ignoring a message body that is not JSON: %.200s", text)
        return {}
    return value if isinstance(value, dict) else {}
