"""Lambda events as the emulator takes them: the samples of infra/events, audio or objects filled in."""

import base64
import copy
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .runtimes import REPO

EVENTS = REPO / "infra" / "events"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from infra/events, by file name."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def multipart_body(audio: bytes, filename: str, fields: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser or ``curl -F`` sends it; returns (body, content type)."""
    boundary = f"chatserver-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in (fields or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + audio
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def with_audio(
    event: Mapping[str, Any], audio: Path, fields: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``event`` (API Gateway v1 or v2) with ``audio`` as its base64 multipart body.

    API Gateway hands a binary body to Lambda base64-encoded (REST APIs only for the
    BinaryMediaTypes they list), with the browser's Content-Type, boundary included.
    """
    body, content_type = multipart_body(audio.read_bytes(), audio.name, fields)
    result = copy.deepcopy(dict(event))
    result["body"] = base64.b64encode(body).decode("ascii")
    result["isBase64Encoded"] = True
    headers = {
        k: v
        for k, v in (result.get("headers") or {}).items()
        if k.lower() not in ("content-type", "content-length")
    }
    # v1 events spell headers as sent, v2 events lower-case them.
    v2 = result.get("version") == "2.0"
    headers["content-type" if v2 else "Content-Type"] = content_type
    headers["content-length" if v2 else "Content-Length"] = str(len(body))
    result["headers"] = headers
    if "multiValueHeaders" in result:
        multi = {
            k: v
            for k, v in result["multiValueHeaders"].items()
            if k.lower() not in ("content-type", "content-length")
        }
        multi["Content-Type"] = [content_type]
        multi["Content-Length"] = [str(len(body))]
        result["multiValueHeaders"] = multi
    return result


def s3_put_event(bucket: str, key_in_event: str, size: int, etag: str | None = None) -> dict[str, Any]:
    """infra/events/s3-put.json for one object; ``key_in_event`` is URL-encoded, as S3 sends keys."""
    event = load_event("s3-put.json")
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"].update({"key": key_in_event, "size": size})
    if etag is None:
        record["s3"]["object"].pop("eTag", None)
    else:
        record["s3"]["object"]["eTag"] = etag
    return event


def sqs_event(bodies: Mapping[str, str]) -> dict[str, Any]:
    """infra/events/sqs-s3-put.json with one message per (messageId, body)."""
    template = load_event("sqs-s3-put.json")["Records"][0]
    records = []
    for message_id, body in bodies.items():
        record = copy.deepcopy(template)
        record.update({"messageId": message_id, "body": body})
        record.pop("md5OfBody", None)
        records.append(record)
    return {"Records": records}


def http_response_body(result: Mapping[str, Any]) -> str:
    """The body of an API Gateway proxy response, decoded if Mangum base64-encoded it."""
    body = result.get("body") or ""
    return base64.b64decode(body).decode() if result.get("isBase64Encoded") else body


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as received, in the shape Lambda's SQS event source mapping delivers it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": dict(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
