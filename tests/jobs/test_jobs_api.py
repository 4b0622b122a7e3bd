"""POST /jobs and GET /jobs/{id} on the FastAPI app, against moto's in-process S3 (mock_aws).

moto accepts a presigned POST without checking its policy or signature; the policy itself is
decoded and checked here, and enforced by a real S3 server in test_s3_presigned_seaweedfs.py.
"""

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from moto import mock_aws

from chatserver.api.app import create_app
from chatserver.core.settings import Settings
from chatserver.jobs.documents import CompletedJob
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import ObjectCreated, make_s3_client
from chatserver.speech.service import TranscriptionService
from tests.support.corpus import clip, normalise
from tests.support.s3 import fake_aws_env, keys, read_result
from tests.support.servers import free_port

BUCKET = "chatserver-api-test"
JOB_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def api_settings(make_settings) -> Settings:
    return make_settings(bucket=BUCKET, presign_expiry_s=600, max_job_upload_bytes=5_000_000)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, api_settings: Settings) -> Iterator[Any]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        client = make_s3_client(api_settings)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def api(api_settings: Settings, service: TranscriptionService, s3: Any) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, service), raise_server_exceptions=False) as test_client:
        yield test_client


def test_jobs_need_a_bucket(client: TestClient) -> None:
    for response in (client.post("/jobs"), client.get(f"/jobs/{'a' * 32}")):
        assert response.status_code == 501
        error = response.json()["error"]
        assert error["type"] == "s3_not_configured"
        assert "CHATSERVER_BUCKET" in error["message"]
        assert "Retry-After" not in response.headers


def test_create_job_returns_a_presigned_post_bound_to_key_size_language_and_time(
    api: TestClient, api_settings: Settings, s3: Any
) -> None:
    before = datetime.now(UTC)
    response = api.post("/jobs", data={"language": "French"})
    assert response.status_code == 201, response.text
    job = response.json()

    assert JOB_ID.fullmatch(job["job_id"])
    assert job["upload_key"] == f"uploads/{job['job_id']}"
    assert job["language"] == "fr"
    assert job["max_bytes"] == 5_000_000
    assert job["status_url"].endswith(f"/jobs/{job['job_id']}")
    fields = job["upload"]["fields"]
    assert fields["key"] == job["upload_key"]
    assert fields["x-amz-meta-language"] == "fr"
    assert BUCKET in job["upload"]["url"]

    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 1, 5_000_000] in conditions
    assert {"x-amz-meta-language": "fr"} in conditions
    assert {"key": job["upload_key"]} in conditions
    assert {"bucket": BUCKET} in conditions
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=590) < expiration < before + timedelta(seconds=610)
    assert abs(datetime.fromisoformat(job["expires_at"]) - expiration) < timedelta(seconds=5)

    status = api.get(job["status_url"])
    assert status.status_code == 200
    assert status.json()["status"] == "pending"
    assert status.json()["schema"] == 1
    # Only the pending marker exists; nothing is written under the upload prefix.
    assert keys(s3, BUCKET) == [f"transcripts/{job['job_id']}.json"]

    other = api.post("/jobs").json()
    assert other["job_id"] != job["job_id"]
    assert "x-amz-meta-language" not in other["upload"]["fields"]
    assert other["language"] is None


def test_create_job_refuses_an_unknown_language_before_anything_is_stored(api: TestClient, s3: Any) -> None:
    response = api.post("/jobs", data={"language": "klingon"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "unknown_language"
    assert keys(s3, BUCKET) == []


@pytest.mark.parametrize(
    ("job_id", "why"),
    [
        ("..%2F..%2Fetc%2Fpasswd", "is not a job id"),
        ("abc", "is not a job id"),
        ("A" * 32, "is not a job id"),
        ("a" * 33, "is not a job id"),
        ("0123456789abcdef0123456789abcdef", "is unknown"),
    ],
)
def test_unknown_or_malformed_job_is_404(api: TestClient, job_id: str, why: str) -> None:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "job_not_found"
    assert why in error["message"]
    assert "POST /jobs" in error["message"]


def test_job_round_trip_from_create_to_completed(
    api: TestClient, api_settings: Settings, service: TranscriptionService, s3: Any
) -> None:
    job = api.post("/jobs", data={"language": "en"}).json()
    audio = clip("sr_english.wav").path.read_bytes()
    # A browser-style form upload to the presigned URL (moto answers it, without checking the policy).
    upload = requests.post(
        job["upload"]["url"], data=job["upload"]["fields"], files={"file": ("note.wav", audio)}, timeout=30
    )
    assert upload.status_code in (200, 201, 204), upload.text
    head = s3.head_object(Bucket=BUCKET, Key=job["upload_key"])
    assert head["Metadata"] == {"language": "en"}

    JobRunner(service, api_settings, s3).handle(
        ObjectCreated(BUCKET, job["upload_key"], head["ETag"].strip('"'), head["ContentLength"])
    )

    status = api.get(job["status_url"])
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "completed"
    assert body["job_id"] == job["job_id"]
    assert normalise(body["text"]) in {"1 2 3", "one two three"}
    assert body == json.loads(read_result(s3, BUCKET, f"transcripts/{job['job_id']}.json").model_dump_json())
    assert isinstance(read_result(s3, BUCKET, f"transcripts/{job['job_id']}.json"), CompletedJob)


def test_s3_outage_is_a_503_with_retry_after(
    make_settings, service: TranscriptionService, monkeypatch
) -> None:
    fake_aws_env(monkeypatch)
    # Real: nothing listens on this loopback port, so every S3 call is refused.
    settings = make_settings(
        bucket=BUCKET,
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_max_attempts=1,
        s3_connect_timeout_s=1,
    )
    with TestClient(create_app(settings, service), raise_server_exceptions=False) as api:
        for response in (api.post("/jobs"), api.get(f"/jobs/{'b' * 32}")):
            assert response.status_code == 503
            assert response.json()["error"]["type"] == "storage_unavailable"
            assert response.headers["Retry-After"]
