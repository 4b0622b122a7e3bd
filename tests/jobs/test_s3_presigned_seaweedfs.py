"""The presigned POST from POST /jobs against a real S3 server: SeaweedFS on loopback.

moto does not check POST policies or signatures; SeaweedFS does (SigV4, content-length-range,
expiry, exact field conditions). Everything here is real: the server, plain httpx form uploads,
and the job runner's conditional writes on a second S3 implementation. The server starts once
per module, binds 127.0.0.1 only, and is stopped by PID (its whole process group).
"""

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from fastapi.testclient import TestClient

from chatserver.api.app import create_app
from chatserver.core.settings import Settings
from chatserver.jobs.metadata import encode_text
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import ObjectCreated, make_s3_client
from chatserver.speech.service import TranscriptionService
from tests.support import REPO
from tests.support.corpus import clip, normalise
from tests.support.receiver import callback_receiver
from tests.support.s3 import REGION, fake_aws_env
from tests.support.servers import free_port, stop_process_group

pytestmark = pytest.mark.s3server

WEED = REPO / ".venv" / "bin" / "weed"
BUCKET = "chatserver-presign"
SECRET = "seaweedfs-callback-secret-0123456789"
PROMPT = "Réunion : Jürgen, Anaïs"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Weed:
    endpoint: str
    access_key: str
    secret_key: str
    log: Path


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    root = tmp_path_factory.mktemp("seaweedfs")
    access_key, secret_key = "chatserver-test", secrets.token_hex(16)
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: free_port() for name in ("master", "master_grpc", "volume", "volume_grpc")}
    ports |= {name: free_port() for name in ("filer", "filer_grpc", "s3", "s3_grpc")}
    (root / "data").mkdir()
    command = [
        str(WEED),
        "-logtostderr=true",
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root / 'data'}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false",  # nothing leaves this machine
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=4",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.iam=false",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={config}",
    ]
    log = root / "weed.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(root)},
            start_new_session=True,
        )
    server = Weed(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, log)
    try:
        _wait_until_writable(server, process)
        yield server
    finally:
        # Its graceful stop takes 15 s and more; the data is throwaway, so the grace is short.
        stop_process_group(process, grace_s=2)
        # weed puts its gRPC sockets in /tmp whatever TMPDIR says, named by port.
        for name, port in ports.items():
            if name.endswith("_grpc"):
                Path(f"/tmp/seaweedfs-{name.removesuffix('_grpc')}-grpc-{port}.sock").unlink(missing_ok=True)


def _wait_until_writable(server: Weed, process: subprocess.Popen) -> None:
    """Ready means a bucket exists and takes a write: the volume server must have registered."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key="ready-probe", Body=b"ok")
            s3.delete_object(Bucket=BUCKET, Key="ready-probe")
            return
        except (ClientError, BotoCoreError) as exc:
            last = exc
            time.sleep(0.3)
    raise TimeoutError(
        f"SeaweedFS not writable in {START_TIMEOUT_S} s ({last}):\n{server.log.read_text()[-3000:]}"
    )


@pytest.fixture
def weed_settings(weed: Weed, make_settings, monkeypatch: pytest.MonkeyPatch):
    fake_aws_env(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", weed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", weed.secret_key)

    def build(**overrides: Any) -> Settings:
        return make_settings(bucket=BUCKET, s3_endpoint_url=weed.endpoint, **overrides)

    return build


def create_job(settings: Settings, service: TranscriptionService, **form: str) -> dict:
    with TestClient(create_app(settings, service)) as api:
        response = api.post("/jobs", data=form)
    assert response.status_code == 201, response.text
    return response.json()


def post_upload(job: dict, body: bytes, fields: dict[str, str] | None = None) -> httpx.Response:
    """A plain multipart form POST, as a browser or curl sends it: fields first, the file last."""
    return httpx.post(
        job["upload"]["url"],
        data=fields if fields is not None else job["upload"]["fields"],
        files={"file": ("recording.wav", body, "audio/wav")},
        timeout=30,
    )


def exists(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def test_upload_within_the_policy_succeeds_and_the_job_completes(weed_settings, service) -> None:
    settings = weed_settings(
        max_job_upload_bytes=1_000_000, callback_secret=SECRET, callback_allow_private=True
    )
    audio = clip("sr_english.wav").path.read_bytes()
    with callback_receiver() as receiver:
        options = {"word_timestamps": "true", "prompt": PROMPT, "callback_url": receiver.url}
        job = create_job(settings, service, language="english", **options)

        response = post_upload(job, audio)

        assert response.status_code == 204, response.text
        s3 = make_s3_client(settings)
        head = s3.head_object(Bucket=BUCKET, Key=job["upload_key"])
        # A real S3 server keeps the options as the policy pinned them (the prompt RFC 2047-encoded).
        assert head["Metadata"] == {
            "language": "en",
            "word-timestamps": "true",
            "prompt": encode_text(PROMPT),
            "callback-url": receiver.url,
            "status-url": job["status_url"],
        }
        assert s3.get_object(Bucket=BUCKET, Key=job["upload_key"])["Body"].read() == audio

        # The runner on a second, real S3 implementation: conditional writes included.
        JobRunner(service, settings, s3).handle(
            ObjectCreated(BUCKET, job["upload_key"], head["ETag"].strip('"'), head["ContentLength"])
        )
        (call,) = receiver.wait_for(1)
    with TestClient(create_app(settings, service)) as api:
        status = api.get(f"/jobs/{job['job_id']}").json()
    assert status["status"] == "completed", status
    assert normalise(status["text"]) in {"1 2 3", "one two three"}
    assert status["source"]["etag"] == head["ETag"].strip('"')
    assert status["options"]["prompt"] == PROMPT
    assert all(segment["words"] for segment in status["segments"])
    assert json.loads(call.body)["status_url"] == job["status_url"]
    assert status["callback"]["delivered_at"] is not None
    assert s3.get_object(Bucket=BUCKET, Key=job["upload_key"])["Body"].read() == audio


def test_upload_over_the_size_limit_is_rejected(weed_settings, service) -> None:
    settings = weed_settings(max_job_upload_bytes=1000)
    job = create_job(settings, service)
    response = post_upload(job, b"\0" * 1001)
    assert response.status_code == 400, response.text
    assert "EntityTooLarge" in response.text
    assert not exists(make_s3_client(settings), job["upload_key"])
    assert post_upload(job, b"\0" * 1000).status_code == 204  # the limit itself is allowed


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("x-amz-signature", None, "SignatureDoesNotMatch"),
        ("policy", None, "SignatureDoesNotMatch"),
        ("key", "uploads/someone-elses-job", "Policy Condition failed"),
        ("x-amz-meta-language", "de", "Policy Condition failed"),
        ("x-amz-meta-extra", "1", "Extra input fields"),
        ("x-amz-meta-task", "transcribe", "Policy Condition failed"),
        ("x-amz-meta-prompt", "another prompt", "Policy Condition failed"),
        ("x-amz-meta-word-timestamps", "false", "Policy Condition failed"),
        ("x-amz-meta-callback-url", "http://127.0.0.1:1/someone-else", "Policy Condition failed"),
    ],
)
def test_tampered_upload_is_rejected(
    weed_settings, service, field: str, value: str | None, expected: str
) -> None:
    settings = weed_settings(callback_secret=SECRET, callback_allow_private=True)
    job = create_job(
        settings,
        service,
        language="fr",
        task="translate",
        prompt=PROMPT,
        word_timestamps="true",
        callback_url="http://127.0.0.1:9/hook",
    )
    fields = dict(job["upload"]["fields"])
    if value is None:
        # Flip one character of the signature, or of the base64 policy the signature covers.
        original = fields[field]
        fields[field] = original[:-2] + ("A" if original[-2] != "A" else "B") + original[-1]
    else:
        fields[field] = value

    response = post_upload(job, b"RIFF audio bytes", fields)

    assert response.status_code == 403, response.text
    assert expected in response.text
    s3 = make_s3_client(settings)
    assert not exists(s3, job["upload_key"])
    assert not exists(s3, "uploads/someone-elses-job")


def test_upload_after_the_policy_expired_is_rejected(weed_settings, service) -> None:
    settings = weed_settings(presign_expiry_s=1)
    job = create_job(settings, service)
    time.sleep(2.1)
    response = post_upload(job, b"RIFF audio bytes")
    assert response.status_code == 403, response.text
    assert "expired" in response.text
    assert not exists(make_s3_client(settings), job["upload_key"])
