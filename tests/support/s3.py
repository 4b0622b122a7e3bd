"""Helpers for the S3 tests: a moto server on loopback, event records as S3 sends them, S3 look-ups."""

import contextlib
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chatserver.jobs.documents import JobResult, parse_result
from chatserver.jobs.s3 import ObjectCreated

REGION = "us-east-1"
# What moto accepts and AWS would refuse: no developer's credentials ever reach a test server.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class MotoServer:
    """moto's S3, SQS... over real HTTP on 127.0.0.1, in this process."""

    endpoint: str
    port: int
    server: ThreadedMotoServer

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client of this server, with moto's test credentials."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name=region, **CREDENTIALS)


@contextlib.contextmanager
def moto_server(start_timeout_s: float = 30) -> Iterator[MotoServer]:
    """A moto server on a free 127.0.0.1 port, reset, for the ``with`` block; stopped after it.

    moto's backends are per process: the reset empties what an earlier server (or another
    runtime's run of the same module) left in them.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # start() waits for the listening socket without a deadline: bounded here.
    starting = threading.Thread(target=server.start, name="moto-start", daemon=True)
    starting.start()
    starting.join(start_timeout_s)
    if starting.is_alive():
        raise TimeoutError(f"the moto server did not start in {start_timeout_s} s")
    try:
        host, port = server.get_host_and_port()
        moto = MotoServer(f"http://{host}:{port}", port, server)
        reset = urllib.request.Request(f"{moto.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10).close()
        yield moto
    finally:
        server.stop()


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
