"""Helpers for the S3 job tests: event records as S3 sends them, a stand-in engine, S3 look-ups."""

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote_plus

import boto3
import numpy as np
import pytest

from chatserver.jobs.documents import JobResult, parse_result
from chatserver.jobs.s3 import ObjectCreated
from chatserver.speech.audio import SAMPLE_RATE
from chatserver.speech.engines import LanguageGuess, TranscribeOptions
from chatserver.speech.engines.base import ProgressCallback, SegmentCallback
from chatserver.speech.transcript import DecodedSegment, Transcript

REGION = "us-east-1"


def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that only moto or a local server accept; nothing from the developer's profile."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # boto3's default session resolves credentials once and keeps them: a fresh one per test
    # sees this test's environment (a later setenv of other keys included).
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def s3_record(bucket: str, key: str, etag: str, size: int, event_name: str = "ObjectCreated:Put") -> dict:
    """One record of an S3 event notification, key URL-encoded and ETag unquoted as S3 sends them."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2025-01-01T00:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "uploads",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key), "size": size, "eTag": etag.strip('"'), "sequencer": "0A1B"},
        },
    }


def put_upload(s3: Any, bucket: str, key: str, body: bytes, language: str | None = None) -> ObjectCreated:
    """Upload ``body`` the way a client would, and return the object S3's notification announces."""
    metadata = {"language": language} if language else {}
    response = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
    return ObjectCreated(bucket, key, response["ETag"].strip('"'), len(body))


def read_result(s3: Any, bucket: str, key: str) -> JobResult | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return parse_result(body)


def keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def result_versions(s3: Any, bucket: str, key: str) -> list[JobResult]:
    """Every version of a result document, oldest first (the bucket must have versioning on)."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = sorted(
        (v for v in listing.get("Versions", []) if v["Key"] == key), key=lambda v: v["LastModified"]
    )
    # LastModified has one-second resolution: order by the documents' own write times instead.
    docs = [
        parse_result(s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read())
        for v in versions
    ]
    return sorted(docs, key=lambda doc: doc.updated_at)


class CallCounter:
    """Counts one S3 operation (optionally for one key) through botocore's event hooks."""

    def __init__(self, s3: Any, operation: str, key: str | None = None) -> None:
        self.key = key
        self.count = 0
        s3.meta.events.register(f"provide-client-params.s3.{operation}", self._seen)

    def _seen(self, params: dict, **_: Any) -> None:
        if self.key is None or params.get("Key") == self.key:
            self.count += 1


class StubEngine:
    """A stand-in engine, for tests that need to control timing: decoding before it stays real.

    Reports ``steps`` as progress, ``delay_s`` apart, and calls ``hook(call_number, fraction)``
    before each report so a test can act while a transcription is under way.
    """

    name = "stub-engine"
    model = "stub-model"
    multilingual = True
    workers = 1

    def __init__(
        self,
        steps: Sequence[float] = (0.5, 1.0),
        delay_s: float = 0.0,
        hook: Callable[[int, float], None] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.steps = steps
        self.delay_s = delay_s
        self.hook = hook
        self.error = error
        self.calls = 0
        self._lock = threading.Lock()

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        with self._lock:
            self.calls += 1
            call = self.calls
        if self.error is not None:
            raise self.error
        for fraction in self.steps:
            time.sleep(self.delay_s)
            if self.hook is not None:
                self.hook(call, fraction)
            if progress is not None:
                progress(fraction)
        duration = round(audio.size / SAMPLE_RATE, 3)
        text = f"stub transcript {call}"
        segment = DecodedSegment(start=0.0, end=duration, text=text)
        # The service collects segments through the callback, as every engine reports them.
        if on_segment is not None:
            on_segment(segment)
        return Transcript(text=text, language=options.language or "en", duration=duration, segments=[segment])

    def detect_language(self, audio: np.ndarray) -> list[LanguageGuess]:
        return [LanguageGuess(code="en", probability=1.0)]
