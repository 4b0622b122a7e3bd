"""Job callbacks: a signed POST to a real HTTP receiver on 127.0.0.1 when the result is written.

Real: the receiver (a threaded http.server, tests/support/receiver.py), the S3 and SQS HTTP APIs
(moto's server) with the bucket's notification, the Lambda context class of awslambdaric, the
engine and the recordings, TLS with a certificate of a test CA (trustme). Stand-ins, each said
where it is used: a resolver where a test needs a name to resolve to given addresses (nothing
real here can make a name change its address on demand), and the stub engine where a test needs
the transcription to take no time.
"""

import json
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import trustme
from awslambdaric.lambda_context import LambdaContext
from fastapi.testclient import TestClient
from moto import mock_aws

from chatserver.api.app import create_app
from chatserver.aws_lambda.dispatch import Dispatcher
from chatserver.core.settings import Settings
from chatserver.jobs.callback import CallbackSender
from chatserver.jobs.callback_url import check_callback
from chatserver.jobs.documents import CompletedJob, FailedJob
from chatserver.jobs.errors import InvalidCallbackUrl
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import ObjectCreated, make_s3_client
from chatserver.speech.service import TranscriptionService
from tests.support import REPO
from tests.support.corpus import clip
from tests.support.engines import StubEngine
from tests.support.http import assert_error
from tests.support.receiver import Received, callback_receiver
from tests.support.s3 import REGION, MotoServer, fake_aws_env, keys, read_result

BUCKET = "chatserver-callback-test"
SECRET = "4c1b9d0e6f2a47b3a8e5c7d9f0a1b2c3-test-only"


def speech_bytes() -> bytes:
    return clip("sr_english.wav").path.read_bytes()


def readme_verify() -> Any:
    """The README's verification recipe, run as a client would copy it."""
    readme = (REPO / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "def verify(" in b]
    namespace: dict[str, Any] = {}
    exec(block, namespace)  # noqa: S102 - the documented snippet itself is what is tested
    return namespace["verify"]


def assert_signed(received: Received, secret: str = SECRET) -> dict:
    assert received.headers["content-type"] == "application/json"
    assert readme_verify()(secret, received.body, received.headers["x-chatserver-signature"])
    assert not readme_verify()("another secret", received.body, received.headers["x-chatserver-signature"])
    return json.loads(received.body)


def lambda_context(seconds: float) -> LambdaContext:
    """The context class the runtime itself passes, with ``seconds`` left in the invocation."""
    deadline_ms = int((time.time() + seconds) * 1000)
    return LambdaContext(
        "req-callback-test", None, None, deadline_ms, "arn:aws:lambda:us-east-1:1:function:f"
    )


def sqs_event(messages: list[dict]) -> dict:
    return {
        "Records": [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs", "awsRegion": REGION}
            for m in messages
        ]
    }


def runner_handler(runner: JobRunner) -> Dispatcher:
    def unused(*_: Any) -> Any:
        raise AssertionError("only S3 notifications are sent here")

    return Dispatcher(unused, lambda: runner, unused)


@pytest.fixture
def callback_settings(make_settings) -> Settings:
    return make_settings(
        bucket=BUCKET,
        callback_secret=SECRET,
        callback_allow_private=True,  # the receiver is on 127.0.0.1
        callback_timeout_s=1,
        callback_backoff_s=0.2,
        callback_max_attempts=3,
    )


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, callback_settings: Settings) -> Iterator[Any]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        client = make_s3_client(callback_settings)
        client.create_bucket(Bucket=BUCKET)
        yield client


def run_upload(settings: Settings, s3: Any, key: str, body: bytes, metadata: dict, engine: Any = None) -> Any:
    service = (
        TranscriptionService(settings, engine) if engine else TranscriptionService.from_settings(settings)
    )
    response = s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata)
    JobRunner(service, settings, s3).handle(
        ObjectCreated(BUCKET, key, response["ETag"].strip('"'), len(body))
    )
    return read_result(s3, BUCKET, f"transcripts/{key.removeprefix('uploads/')}.json")


def test_post_jobs_to_callback_through_the_s3_event_path(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, make_settings, service: TranscriptionService
) -> None:
    fake_aws_env(monkeypatch)
    settings = make_settings(
        bucket=BUCKET, s3_endpoint_url=moto.endpoint, callback_secret=SECRET, callback_allow_private=True
    )
    s3 = make_s3_client(settings)
    sqs = moto.client("sqs")
    s3.create_bucket(Bucket=BUCKET)
    queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )
    speech = clip("jfk.flac")
    with callback_receiver() as receiver, TestClient(create_app(settings, service)) as api:
        created = api.post("/jobs", data={"callback_url": receiver.url, "word_timestamps": "true"})
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["callback_url"] == receiver.url
        fields = job["upload"]["fields"]
        assert fields["x-amz-meta-callback-url"] == receiver.url
        assert fields["x-amz-meta-status-url"] == job["status_url"]
        # The browser's upload, over real HTTP to the S3 server.
        upload = requests.post(
            job["upload"]["url"],
            data=fields,
            files={"file": ("jfk.flac", speech.path.read_bytes())},
            timeout=30,
        )
        assert upload.status_code in (200, 201, 204), upload.text
        # What the bucket's notification put on the queue, as the event source mapping hands it over.
        messages: list[dict] = []
        deadline = time.monotonic() + 20
        while not any("Records" in json.loads(m["Body"]) for m in messages) and time.monotonic() < deadline:
            messages += sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
        before = datetime.now(UTC)
        outcome = runner_handler(JobRunner(service, settings, s3))(sqs_event(messages), lambda_context(120))
        assert outcome == {"batchItemFailures": []}
        (call,) = receiver.wait_for(1)
        assert receiver.received == [call]  # one callback, nothing more after the wait
        body = assert_signed(call)
        assert set(body) == {"job_id", "status", "status_url", "sent_at"}
        assert (body["job_id"], body["status"], body["status_url"]) == (
            job["job_id"],
            "completed",
            job["status_url"],
        )
        assert before <= datetime.fromisoformat(body["sent_at"]) <= datetime.now(UTC)
        assert call.path == "/hooks/job-done?token=t1"
        assert call.headers["host"] == f"127.0.0.1:{receiver.port}"
        # The same hex as the README's openssl line.
        if openssl := shutil.which("openssl"):
            digest = subprocess.run(
                [openssl, "dgst", "-sha256", "-hmac", SECRET],
                input=call.body,
                capture_output=True,
                check=True,
            ).stdout.decode()
            assert digest.strip().endswith(call.headers["x-chatserver-signature"].removeprefix("sha256="))
        # The delivery is recorded in the result: the client can see it too.
        status = api.get(job["status_url"]).json()
    assert status["status"] == "completed"
    assert status["callback"]["attempts"] == 1
    assert status["callback"]["last_error"] is None
    assert datetime.fromisoformat(status["callback"]["delivered_at"]) >= datetime.fromisoformat(
        body["sent_at"]
    )
    assert status["options"]["callback_url"] == receiver.url
    assert all(s["words"] for s in status["segments"])


def test_a_failed_aws_s3_cp_job_calls_back_with_its_error(
    callback_settings: Settings, s3: Any, service: TranscriptionService
) -> None:
    with callback_receiver() as receiver:
        doc = run_upload(
            callback_settings,
            s3,
            "uploads/team/broken.wav",
            b"RIFF not audio" * 64,
            {"callback-url": receiver.url},
        )
        (call,) = receiver.wait_for(1)
    assert isinstance(doc, FailedJob)
    body = assert_signed(call)
    assert body["status"] == "failed"
    assert body["error"]["type"] == "unsupported_media"
    assert body["error"] == doc.error.model_dump()
    # Without POST /jobs the id is the key, and the status is the result document itself.
    assert body["job_id"] == "team/broken.wav"
    assert body["status_url"] == f"s3://{BUCKET}/transcripts/team/broken.wav.json"
    assert doc.callback is not None
    assert doc.callback.attempts == 1
    assert doc.callback.delivered_at is not None


def test_a_500_and_a_503_are_retried_with_backoff_then_delivered(
    callback_settings: Settings, s3: Any
) -> None:
    with callback_receiver([500, 503, 200]) as receiver:
        doc = run_upload(
            callback_settings,
            s3,
            "uploads/retry.wav",
            clip("sr_english.wav").path.read_bytes(),
            {"callback-url": receiver.url},
            StubEngine(),
        )
        calls = receiver.wait_for(3)
    assert isinstance(doc, CompletedJob)
    bodies = [assert_signed(call) for call in calls]  # each attempt signed anew
    assert len({b["sent_at"] for b in bodies}) == 3
    assert all({**b, "sent_at": None} == {**bodies[0], "sent_at": None} for b in bodies)
    # The first wait is the backoff; after the 503 its Retry-After (1 s) is longer than 0.4 s.
    assert calls[1].at - calls[0].at >= 0.2
    assert calls[2].at - calls[1].at >= 1.0
    assert doc.callback is not None
    assert (doc.callback.attempts, doc.callback.last_error) == (3, None)
    assert doc.callback.delivered_at is not None


@pytest.mark.parametrize(
    ("status", "why"), [(404, "HTTP 404 (not retried)"), (301, "redirects are not followed")]
)
def test_an_answer_that_retrying_cannot_change_ends_the_delivery(
    callback_settings: Settings, s3: Any, status: int, why: str
) -> None:
    with callback_receiver([status]) as receiver:
        doc = run_upload(
            callback_settings,
            s3,
            "uploads/gone.wav",
            speech_bytes(),
            {"callback-url": receiver.url},
            StubEngine(),
        )
        time.sleep(0.5)  # room for a retry that must not come
    assert len(receiver.received) == 1
    assert doc.callback is not None
    assert doc.callback.attempts == 1
    assert doc.callback.delivered_at is None
    assert why in (doc.callback.last_error or "")


@pytest.mark.parametrize("answer", ["hang", "trickle"])
def test_a_receiver_that_never_answers_is_bounded(callback_settings: Settings, s3: Any, answer: str) -> None:
    # Three attempts of at most 1 s each, 0.2 + 0.4 s apart: about 3.6 s, whatever the receiver
    # does (a trickle of one byte every 0.3 s would never trip a socket timeout).
    with callback_receiver([answer] * 5) as receiver:
        started = time.monotonic()
        doc = run_upload(
            callback_settings,
            s3,
            "uploads/silent.wav",
            speech_bytes(),
            {"callback-url": receiver.url},
            StubEngine(),
        )
        elapsed = time.monotonic() - started
    assert isinstance(doc, CompletedJob)  # the result was written before, and stays
    assert doc.callback is not None
    assert doc.callback.attempts == 3
    assert doc.callback.delivered_at is None
    assert "no answer within 1.0 s" in (doc.callback.last_error or "")
    assert len(receiver.received) == 3
    assert elapsed < 3 * 1.0 + 0.6 + 5, elapsed  # bounded, far below the receiver's 60 s hang
    sys.stdout.write(f"\n[callback] {answer}: 3 attempts of 1 s, job and delivery in {elapsed:.2f} s\n")


def test_callbacks_stop_with_the_total_bound_and_before_the_invocation_ends(make_settings, s3: Any) -> None:
    many = make_settings(
        bucket=BUCKET,
        callback_secret=SECRET,
        callback_allow_private=True,
        callback_timeout_s=1,
        callback_backoff_s=0.1,
        callback_max_attempts=10,
        callback_total_s=2.5,
    )
    with callback_receiver(["hang"] * 10) as receiver:
        started = time.monotonic()
        doc = run_upload(
            many, s3, "uploads/total.wav", speech_bytes(), {"callback-url": receiver.url}, StubEngine()
        )
        elapsed = time.monotonic() - started
    assert doc.callback is not None
    assert 1 <= doc.callback.attempts < 10
    assert "no time left" in (doc.callback.last_error or "")
    assert elapsed < 2.5 + 2.5, elapsed

    # In Lambda: 5 s left in the invocation, a 30 s budget and 5 s attempts. The callback keeps
    # 3 s for the record write, so the whole invocation returns before its deadline.
    lambda_like = make_settings(
        bucket=BUCKET, callback_secret=SECRET, callback_allow_private=True, callback_timeout_s=5
    )
    with callback_receiver(["hang"] * 10) as receiver:
        body = clip("sr_english.wav").path.read_bytes()
        put = s3.put_object(
            Bucket=BUCKET, Key="uploads/deadline.wav", Body=body, Metadata={"callback-url": receiver.url}
        )
        record = {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": BUCKET},
                "object": {"key": "uploads/deadline.wav", "eTag": put["ETag"].strip('"')},
            },
        }
        runner = JobRunner(TranscriptionService(lambda_like, StubEngine()), lambda_like, s3)
        started = time.monotonic()
        runner_handler(runner)({"Records": [record]}, lambda_context(5.0))
        elapsed = time.monotonic() - started
    assert elapsed < 5.0, elapsed
    sys.stdout.write(f"\n[callback] 5 s left in the invocation: it returned after {elapsed:.2f} s\n")
    doc = read_result(s3, BUCKET, "transcripts/deadline.wav.json")
    assert doc.callback is not None
    assert doc.callback.attempts == 1
    assert "no answer" in (doc.callback.last_error or "")


@pytest.fixture
def strict_api(make_settings, service: TranscriptionService, s3: Any) -> Iterator[TestClient]:
    """The production rules: https to public addresses only."""
    settings = make_settings(bucket=BUCKET, callback_secret=SECRET)
    with TestClient(create_app(settings, service), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/done", "is not an https URL"),
        ("ftp://hooks.example.com/done", "is not an https URL"),
        ("https://127.0.0.1/done", "a loopback address"),
        ("https://localhost:8443/done", "a loopback address"),  # resolved for real: /etc/hosts
        ("https://10.1.2.3/done", "a private address"),
        ("https://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("https://[fd00:ec2::254]/latest/meta-data/", "a cloud metadata address"),
        ("https://[::ffff:192.168.1.1]/done", "a private address"),
        ("https://[64:ff9b::a9fe:a9fe]/done", "a cloud metadata address"),  # NAT64 of the IMDS
        ("https://224.0.0.1/done", "a multicast address"),
        ("https://100.64.0.1/done", "not a public address"),
        ("https://0.0.0.0/done", "an unspecified address"),
        ("https://user:secret@hooks.example.com/done", "user:password@"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://hooks.invalid/done", "does not resolve"),  # .invalid never resolves (RFC 6761)
        ("https://[::1/done", "is not a URL"),
        ("https://" + "a" * 2000 + ".com/", "over 2000"),
    ],
)
def test_post_jobs_refuses_a_callback_url_it_may_not_call(
    strict_api: TestClient, s3: Any, url: str, why: str
) -> None:
    assert_error(strict_api.post("/jobs", data={"callback_url": url}), 400, "invalid_callback_url", why)
    assert keys(s3, BUCKET) == []


def test_post_jobs_refuses_a_callback_without_a_secret(
    make_settings, service: TranscriptionService, s3: Any
) -> None:
    settings = make_settings(bucket=BUCKET, callback_allow_private=True)
    with TestClient(create_app(settings, service)) as api:
        response = api.post("/jobs", data={"callback_url": "https://hooks.example.com/done"})
        assert_error(response, 400, "callback_not_configured", "CHATSERVER_CALLBACK_SECRET")
        assert keys(s3, BUCKET) == []
        job = api.post("/jobs")  # jobs without a callback still work
        assert job.status_code == 201
    assert keys(s3, BUCKET) == [f"transcripts/{job.json()['job_id']}.json"]


def test_dns_rebinding_is_refused_before_the_attempt(callback_settings: Settings) -> None:
    strict = callback_settings.model_copy(update={"callback_allow_private": False})
    # Stand-in for DNS: a name public when the job is created, loopback when the result is ready.
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    resolved: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        resolved.append(host)
        return next(answers)

    with callback_receiver() as receiver:
        url = f"https://hooks.example.test:{receiver.port}/done"
        check_callback(url, strict, rebinding)  # POST /jobs accepts it
        delivery = CallbackSender(strict, rebinding).deliver(url, "job", "completed", "s3://b/k", None)
        time.sleep(0.3)
    assert resolved == ["hooks.example.test", "hooks.example.test"]
    assert delivery.attempts == 0
    assert delivery.delivered_at is None
    assert "resolves to 127.0.0.1, a loopback address" in (delivery.last_error or "")
    assert receiver.received == []


def test_the_connection_goes_to_the_address_that_was_checked(callback_settings: Settings) -> None:
    # Stand-in for DNS: hooks.example.test is nowhere in real DNS; only the checked address reaches it.
    with callback_receiver() as receiver:
        url = f"http://hooks.example.test:{receiver.port}/done"
        delivery = CallbackSender(callback_settings, lambda host, port: ["127.0.0.1"]).deliver(
            url, "job", "completed", "s3://b/k", None
        )
        (call,) = receiver.wait_for(1)
    assert delivery.delivered_at is not None
    assert call.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert_signed(call)


def test_https_callbacks_check_the_certificate_of_the_name(
    callback_settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    # The default context (system CAs) reads this: the sender's own TLS setup is what runs.
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    with callback_receiver(tls=server_context, host_name="localhost") as receiver:
        delivery = CallbackSender(callback_settings).deliver(
            receiver.url, "job", "completed", "s3://b/k", None
        )
        (call,) = receiver.wait_for(1)
    assert delivery.delivered_at is not None, delivery
    assert_signed(call)

    wrong = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(wrong)
    with callback_receiver(tls=wrong, host_name="localhost") as receiver:
        delivery = CallbackSender(callback_settings).deliver(
            receiver.url, "job", "completed", "s3://b/k", None
        )
    assert delivery.attempts == 1  # not retried: a certificate does not change in seconds
    assert delivery.delivered_at is None
    assert "TLS certificate not valid for localhost" in (delivery.last_error or "")
    assert receiver.received == []


def test_refused_addresses_are_refused_in_every_form() -> None:
    for url in ("https://[::ffff:127.0.0.1]/", "https://[2002:a9fe:a9fe::]/", "https://[fe80::1%25eth0]/"):
        with pytest.raises(InvalidCallbackUrl):
            check_callback(url, Settings(callback_secret=SECRET), lambda host, port: [host])
    # A name with one private address among public ones is refused whole.
    with pytest.raises(InvalidCallbackUrl, match=r"resolves to 10\.0\.0\.7"):
        check_callback(
            "https://mixed.example.test/",
            Settings(callback_secret=SECRET),
            lambda h, p: ["8.8.8.8", "10.0.0.7"],
        )
    check_callback("https://public.example.test/", Settings(callback_secret=SECRET), lambda h, p: ["8.8.8.8"])


def test_an_unused_receiver_fixture_is_not_left_running() -> None:
    with callback_receiver() as receiver:
        port = receiver.port
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://127.0.0.1:{port}/", timeout=2)
