"""S3 and SQS as the jobs side uses them: the clients, an uploaded object, and conditional I/O.

S3 answers "no such object" and "your condition failed" with errors; every caller here treats
them as ordinary outcomes, so they come back as ``None`` (and every other error raises).

boto3 is imported where it is first used, not with this module: it is about a tenth of a second
of every process start (the HTTP app imports the jobs side for POST /jobs), and a server without
a bucket never needs it.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.settings import Settings

if TYPE_CHECKING:
    from botocore.config import Config
    from botocore.exceptions import ClientError

# boto3 builds its client classes at run time; there is no importable type to name here.
S3Client = Any
SQSClient = Any

_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class ObjectCreated:
    """One uploaded object, as an S3 ObjectCreated notification announces it."""

    bucket: str
    key: str  # decoded: S3 sends keys URL-encoded with '+' for spaces
    etag: str | None
    size: int | None


def bare_etag(etag: str) -> str:
    return etag.strip('"')


def _config(settings: Settings, **extra: Any) -> "Config":
    from botocore.config import Config

    return Config(
        connect_timeout=settings.s3_connect_timeout_s,
        read_timeout=settings.s3_read_timeout_s,
        # total_max_attempts counts the first try; botocore's max_attempts would not.
        retries={"mode": "standard", "total_max_attempts": settings.s3_max_attempts},
        **extra,
    )


def make_s3_client(settings: Settings) -> S3Client:
    config = _config(
        settings,
        signature_version="s3v4",
        # Local S3 servers (moto, SeaweedFS, MinIO) answer on an IP address, where virtual-host
        # style cannot work; AWS itself takes virtual-host style.
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    import boto3

    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config
    )


def make_sqs_client(settings: Settings) -> SQSClient:
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=settings.sqs_endpoint_url,
        region_name=settings.s3_region,
        config=_config(settings),
    )


def _code(exc: "ClientError") -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: "ClientError") -> bool:
    return _code(exc) in _MISSING_CODES


def is_conflict(exc: "ClientError") -> bool:
    return _code(exc) in _CONFLICT_CODES


def head_object(s3: S3Client, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's metadata; None when there is no such object."""
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def get_object(s3: S3Client, bucket: str, key: str, *, if_match: str | None = None) -> dict[str, Any] | None:
    """GetObject's response (read ``Body`` and close it); None when the object is missing or,
    with ``if_match``, is no longer that version."""
    from botocore.exceptions import ClientError

    condition = {"IfMatch": if_match} if if_match else {}
    try:
        return s3.get_object(Bucket=bucket, Key=key, **condition)
    except ClientError as exc:
        if is_missing(exc) or (if_match and is_conflict(exc)):
            return None
        raise


def put_object_if(
    s3: S3Client, bucket: str, key: str, body: bytes, *, replaces: str | None, **fields: Any
) -> str | None:
    """PutObject only if the stored object is still the one with ETag ``replaces`` (None: only if
    there is none); the new ETag, or None when the condition failed."""
    from botocore.exceptions import ClientError

    condition = {"IfMatch": replaces} if replaces else {"IfNoneMatch": "*"}
    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=body, **condition, **fields)["ETag"]
    except ClientError as exc:
        if is_conflict(exc):
            return None
        raise
