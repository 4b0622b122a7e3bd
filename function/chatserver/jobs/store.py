"""Where jobs live in S3: job ids and keys, result documents, and presigned uploads."""

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, ValidationError

from ..core.settings import Settings
from .documents import JobOptions, JobResult, PendingJob, parse_result, utc_now
from .errors import StorageUnavailable
from .metadata import metadata_fields
from .s3 import S3Client, get_object, put_object_if

logger = logging.getLogger(__name__)

# 128 random bits: ids are the only thing that guards a job's status, so they must be unguessable.
JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def new_job_id() -> str:
    return secrets.token_hex(16)


def is_job_id(value: str) -> bool:
    return JOB_ID_PATTERN.fullmatch(value) is not None


def upload_key(settings: Settings, job_id: str) -> str:
    return f"{settings.upload_prefix}{job_id}"


def result_key(settings: Settings, key: str) -> str:
    """``uploads/a/b.wav`` -> ``transcripts/a/b.wav.json``; never under the upload prefix."""
    if not key.startswith(settings.upload_prefix):
        raise ValueError(f"{key!r} is not under the upload prefix {settings.upload_prefix!r}")
    result = f"{settings.result_prefix}{key[len(settings.upload_prefix) :]}.json"
    # Settings already forbid overlapping prefixes; this is the last line against a trigger loop.
    if result.startswith(settings.upload_prefix):
        raise ValueError(f"result key {result!r} would land under the upload prefix")
    return result


class WriteConflict(Exception):
    """A conditional write lost: the document changed since it was read."""


class Stored(NamedTuple):
    doc: JobResult | None
    etag: str | None  # the result object's own ETag, for the next conditional write


class ResultStore:
    """Result documents, each read and written whole; writes are conditional on what was read."""

    def __init__(self, s3: S3Client) -> None:
        self.s3 = s3

    def read(self, bucket: str, key: str) -> Stored:
        response = get_object(self.s3, bucket, key)
        if response is None:
            return Stored(None, None)
        body = response["Body"].read()
        try:
            return Stored(parse_result(body), response["ETag"])
        except ValidationError:
            # Not ours or from a future schema: keep its ETag so a conditional write can replace it.
            logger.warning("s3://%s/%s is not a schema 1 job result; it will be replaced", bucket, key)
            return Stored(None, response["ETag"])

    def write(self, bucket: str, key: str, doc: JobResult, *, replaces: str | None) -> str:
        """Write ``doc`` only if the stored document is still ``replaces`` (None: still absent)."""
        etag = put_object_if(
            self.s3,
            bucket,
            key,
            doc.model_dump_json().encode(),
            replaces=replaces,
            ContentType="application/json",
            CacheControl="no-store",
        )
        if etag is None:
            raise WriteConflict(key)
        return etag


class PresignedPost(BaseModel):
    url: str = Field(description="POST a multipart/form-data body here.")
    fields: dict[str, str] = Field(description="Send every field as is, then the file last, as 'file'.")


@dataclass
class JobStore:
    """What the jobs API needs: create a job (pending marker + presigned POST), read its result."""

    s3: S3Client
    settings: Settings

    @property
    def bucket(self) -> str:
        if not self.settings.bucket:
            raise RuntimeError("JobStore needs settings.bucket")
        return self.settings.bucket

    def create(
        self, job_id: str, options: JobOptions, status_url: str | None = None
    ) -> tuple[PendingJob, PresignedPost]:
        """The pending marker and the presigned POST of a new job (``job_id``: ``new_job_id()``)."""
        key = upload_key(self.settings, job_id)
        expiry = self.settings.presign_expiry_s
        pending = PendingJob(job_id=job_id, upload_expires_at=utc_now() + timedelta(seconds=expiry))
        # The options travel as the object's metadata (metadata.py), the only thing the runner
        # sees. Every field must appear in the policy, so a client can neither add metadata nor
        # change the key or the options it asked for (a callback_url among them).
        fields = metadata_fields(options, status_url)
        conditions: list[Any] = [["content-length-range", 1, self.settings.max_job_upload_bytes]]
        conditions += [{name: value} for name, value in fields.items()]
        from botocore.exceptions import BotoCoreError, ClientError  # s3.py: boto3 on first use

        try:
            # The marker makes GET /jobs/{id} tell "pending" from "unknown" before any upload.
            ResultStore(self.s3).write(self.bucket, result_key(self.settings, key), pending, replaces=None)
            post = self.s3.generate_presigned_post(
                Bucket=self.bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expiry
            )
        except (ClientError, BotoCoreError, WriteConflict) as exc:
            logger.error("could not create job %s in s3://%s: %s", job_id, self.bucket, exc)
            raise StorageUnavailable() from exc
        logger.info("job %s created: upload to s3://%s/%s within %d s", job_id, self.bucket, key, expiry)
        return pending, PresignedPost(url=post["url"], fields=post["fields"])

    def get(self, job_id: str) -> Stored:
        from botocore.exceptions import BotoCoreError, ClientError

        key = result_key(self.settings, upload_key(self.settings, job_id))
        try:
            return ResultStore(self.s3).read(self.bucket, key)
        except (ClientError, BotoCoreError) as exc:
            logger.error("could not read job %s at s3://%s/%s: %s", job_id, self.bucket, key, exc)
            raise StorageUnavailable() from exc
