"""Drop a file in the bucket, get a JSON transcript back: moto as a real HTTP server on loopback.

Real: the S3 and SQS HTTP APIs (moto's server), the bucket notification filtered to the upload
prefix, the message S3 puts on the queue, SQS redelivery after the visibility timeout, the
refused connection, the audio and the engine. Stand-in: this test plays the Lambda SQS poller,
wrapping each message in the event shape Lambda passes to the handler.
"""

import json
import logging
import time
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from chatserver.aws_lambda.dispatch import Dispatcher
from chatserver.core.settings import Settings
from chatserver.jobs.documents import CompletedJob
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import make_s3_client
from chatserver.speech.service import TranscriptionService
from tests.support.corpus import clip, wer
from tests.support.s3 import REGION, MotoServer, fake_aws_env, keys, read_result
from tests.support.servers import free_port

pytestmark = pytest.mark.s3server

BUCKET = "chatserver-e2e"


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch, moto: MotoServer) -> str:
    fake_aws_env(monkeypatch)
    return moto.endpoint


@pytest.fixture
def e2e_settings(make_settings, endpoint: str) -> Settings:
    return make_settings(bucket=BUCKET, s3_endpoint_url=endpoint, s3_max_attempts=2)


@pytest.fixture
def queue_url(endpoint: str, e2e_settings: Settings) -> str:
    s3 = make_s3_client(e2e_settings)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    url = sqs.create_queue(QueueName="chatserver-uploads")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
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
    return url


def receive(sqs: Any, url: str, visibility_s: int = 30, wait_s: float = 10) -> list[dict]:
    """What a Lambda SQS trigger would get: the messages visible now, polled for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility_s, WaitTimeSeconds=1
        ).get("Messages", [])
        if messages or time.monotonic() > deadline:
            return messages


def lambda_event(messages: list[dict]) -> dict:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "eventSource": "aws:sqs",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def lambda_handler(runner: JobRunner) -> Dispatcher:
    """The function's handler as the queue's event source mapping invokes it, with this runner."""

    def unused(*_: Any) -> Any:
        raise AssertionError("only S3 notifications in SQS messages are sent here")

    return Dispatcher(unused, lambda: runner, unused)


def count_calls(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[int]:
    calls = [0]
    original = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, counted)
    return calls


def test_dropped_file_comes_back_as_json_through_s3_and_sqs(
    endpoint: str,
    e2e_settings: Settings,
    queue_url: str,
    service: TranscriptionService,
    make_settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3 = make_s3_client(e2e_settings)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    # Configuring the notification queued an s3:TestEvent; a real deployment sees one too.
    setup_messages = receive(sqs, queue_url, wait_s=2)
    assert [json.loads(m["Body"]).get("Event") for m in setup_messages] == ["s3:TestEvent"]
    assert lambda_handler(JobRunner(service, e2e_settings, s3))(lambda_event(setup_messages), None) == {
        "batchItemFailures": []
    }
    for message in setup_messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    speech = clip("jfk.flac")
    key = "uploads/Meeting 2025/Jürgen's talk + Q&A.flac"
    # Multipart, as `aws s3 cp` does for large files: the event is CompleteMultipartUpload.
    s3.upload_file(str(speech.path), BUCKET, key, Config=TransferConfig(multipart_threshold=1024 * 1024))
    s3.put_object(Bucket=BUCKET, Key="elsewhere/not watched.flac", Body=b"ignored")
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ETag"].strip('"').endswith("-1")

    messages = receive(sqs, queue_url, visibility_s=1)
    records = [r for m in messages for r in json.loads(m["Body"])["Records"]]
    assert {r["s3"]["object"]["key"] for r in records} == {quote_plus(key)}  # URL-encoded, as S3 sends
    assert {r["s3"]["object"]["eTag"] for r in records} == {head["ETag"].strip('"')}
    # moto also sends a Put event for a completed multipart upload: a duplicate to absorb.
    assert "ObjectCreated:CompleteMultipartUpload" in {r["eventName"] for r in records}

    # First delivery: S3 unreachable (a closed loopback port, refused for real). The runner
    # raises, so the handler reports every message as failed and SQS keeps them; nothing is written.
    unreachable = make_settings(
        bucket=BUCKET,
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_max_attempts=1,
        s3_connect_timeout_s=1,
    )
    with caplog.at_level(logging.ERROR):
        failed = lambda_handler(JobRunner(service, unreachable))(lambda_event(messages), None)
    assert sorted(f["itemIdentifier"] for f in failed["batchItemFailures"]) == sorted(
        m["MessageId"] for m in messages
    )
    assert any("EndpointConnectionError" in (r.exc_text or "") for r in caplog.records)
    assert keys(s3, BUCKET, "transcripts/") == []

    # SQS hands the same message out again once its visibility timeout ends.
    time.sleep(1.1)
    redelivered = receive(sqs, queue_url)
    assert sorted(m["MessageId"] for m in redelivered) == sorted(m["MessageId"] for m in messages)
    transcriptions = count_calls(monkeypatch, service, "transcribe_samples")
    assert lambda_handler(JobRunner(service, e2e_settings))(lambda_event(redelivered), None) == {
        "batchItemFailures": []
    }
    for message in redelivered:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert transcriptions == [1]  # the duplicate record did no work

    result_key = "transcripts/Meeting 2025/Jürgen's talk + Q&A.flac.json"
    assert keys(s3, BUCKET, "transcripts/") == [result_key]
    doc = read_result(s3, BUCKET, result_key)
    assert isinstance(doc, CompletedJob)
    assert wer(speech.reference, doc.text) < 0.15, doc.text
    assert doc.language == "en"
    assert abs(doc.duration - speech.duration) < 0.1
    assert doc.source.etag == head["ETag"].strip('"')
    assert doc.source.size == speech.path.stat().st_size
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == speech.path.read_bytes()
    assert s3.head_object(Bucket=BUCKET, Key=key)["ETag"] == head["ETag"]

    # Writing the result and the unwatched upload queued nothing: no trigger loop.
    assert receive(sqs, queue_url, wait_s=1) == []
