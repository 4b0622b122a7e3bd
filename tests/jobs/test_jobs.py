"""The S3 job runner against moto's in-process S3 (mock_aws), with real audio and the real engine.

Where timing has to be controlled (concurrent deliveries, progress), ``StubEngine`` stands in
for the engine; decoding and everything S3-side stay real. Transient S3 failures are stand-ins:
S3's 503 SlowDown answer injected through botocore's event hooks (at the HTTP layer for the
download, so botocore's own retries run first). A real refused connection is in test_s3_e2e.py.
"""

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws
from pydantic import ValidationError

from chatserver.aws_lambda.dispatch import Dispatcher
from chatserver.aws_lambda.events import parse_record, s3_records
from chatserver.core.errors import InsufficientStorage
from chatserver.core.settings import Settings
from chatserver.jobs.documents import CompletedJob, FailedJob, ProcessingJob
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import ObjectCreated, make_s3_client
from chatserver.speech.service import TranscriptionService
from tests.support.corpus import clip, normalise, wer
from tests.support.engines import StubEngine
from tests.support.s3 import (
    CallCounter,
    fake_aws_env,
    keys,
    put_upload,
    read_result,
    result_versions,
    s3_record,
)

BUCKET = "chatserver-jobs-test"


@pytest.fixture
def job_settings(make_settings) -> Settings:
    return make_settings(bucket=BUCKET, s3_max_attempts=2, progress_interval_s=0.1)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, job_settings: Settings) -> Iterator[Any]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        # The runner's own client factory, so its timeouts and retry mode are the ones tested.
        client = make_s3_client(job_settings)
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def runner(service: TranscriptionService, job_settings: Settings, s3: Any) -> JobRunner:
    return JobRunner(service, job_settings, s3)


def stub_runner(job_settings: Settings, s3: Any, engine: StubEngine) -> JobRunner:
    return JobRunner(TranscriptionService(job_settings, engine), job_settings, s3)


def assert_clean(s3: Any, tmp_audio_dir: Path, sources: dict[str, bytes]) -> None:
    """No temp file left, and the uploads are exactly what the user put there, nothing added."""
    assert list(tmp_audio_dir.iterdir()) == []
    assert keys(s3, BUCKET, "uploads/") == sorted(sources)
    for key, body in sources.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    # The runner never writes a new version of an upload either.
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="uploads/").get("Versions", [])
    assert len(versions) == len(sources)


def slow_down(s3: Any, operation: str, when: Callable[[Any], bool]) -> list[int]:
    """Answer ``operation`` with S3's 503 SlowDown while ``when(request)``; returns a hit counter."""
    hits: list[int] = []

    def respond(request: Any, **_: Any) -> AWSResponse | None:
        if not when(request):
            return None
        hits.append(1)
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Raw(body))

    # register_first: ahead of moto's own handler, which would otherwise answer.
    s3.meta.events.register_first(f"before-send.s3.{operation}", respond, unique_id=f"slow-{operation}")
    return hits


def slow_down_call(s3: Any, operation: str, when: Callable[[dict], bool]) -> None:
    """Answer ``operation`` with 503 SlowDown wherever ``when(request_dict)``.

    Decided before botocore wraps the body in aws-chunked encoding, so the body can be read;
    an answer given here skips botocore's retries (``slow_down`` is the one that goes through them).
    """

    def respond(params: dict, **_: Any) -> tuple[AWSResponse, dict] | None:
        if not when(params):
            return None
        error = {"Code": "SlowDown", "Message": "Please reduce your request rate."}
        http = AWSResponse(params["url"], 503, {}, _Raw(b""))
        return http, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 503}}

    s3.meta.events.register_first(f"before-call.s3.{operation}", respond, unique_id=f"slow-{operation}")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def test_upload_is_transcribed_into_json_next_to_nothing_it_touches(
    runner: JobRunner, s3: Any, tmp_audio_dir: Path
) -> None:
    speech = clip("fleurs-en-004.ogg")
    body = speech.path.read_bytes()
    key = "uploads/team notes/Ünïcode + plus/voice note 1.ogg"
    uploaded = put_upload(s3, BUCKET, key, body, language="en")
    record = s3_record(BUCKET, key, uploaded.etag, uploaded.size)
    assert record["s3"]["object"]["key"] != key  # sent URL-encoded, as S3 does

    runner.handle(parse_record(record))

    doc = read_result(s3, BUCKET, "transcripts/team notes/Ünïcode + plus/voice note 1.ogg.json")
    assert isinstance(doc, CompletedJob)
    assert wer(speech.reference, doc.text) < 0.3, doc.text
    assert doc.language == "en"
    assert doc.options.language == "en"
    assert abs(doc.duration - speech.duration) < 0.1
    assert doc.segments
    assert all(0 <= s.start <= s.end <= doc.duration + 0.5 for s in doc.segments)
    assert normalise(" ".join(s.text for s in doc.segments)) == normalise(doc.text)
    assert (doc.engine, doc.model) == ("faster-whisper", "base")
    assert doc.source.model_dump() == {
        "bucket": BUCKET,
        "key": key,
        "etag": uploaded.etag,
        "size": len(body),
    }
    assert doc.job_id == "team notes/Ünïcode + plus/voice note 1.ogg"
    assert doc.created_at <= doc.started_at <= doc.finished_at
    assert 0 < doc.processing_seconds < 120
    raw = json.loads(s3.get_object(Bucket=BUCKET, Key=f"transcripts/{doc.job_id}.json")["Body"].read())
    assert raw["schema"] == 1
    assert raw["status"] == "completed"
    assert set(raw["segments"][0]) == {"start", "end", "text"}
    assert_clean(s3, tmp_audio_dir, {key: body})


def test_language_is_detected_without_metadata(runner: JobRunner, s3: Any) -> None:
    speech = clip("stp-fr-02.wav")
    runner.handle(put_upload(s3, BUCKET, "uploads/commande.wav", speech.path.read_bytes()))
    doc = read_result(s3, BUCKET, "transcripts/commande.wav.json")
    assert isinstance(doc, CompletedJob)
    assert doc.options.language is None
    assert doc.language == "fr"
    assert wer(speech.reference, doc.text) < 0.5, doc.text


def test_duplicate_event_does_no_work(runner: JobRunner, s3: Any, job_settings: Settings) -> None:
    key = "uploads/dup.wav"
    record = put_upload(s3, BUCKET, key, clip("sr_english.wav").path.read_bytes(), language="en")
    runner.handle(record)
    first = s3.get_object(Bucket=BUCKET, Key="transcripts/dup.wav.json")
    first_body = first["Body"].read()
    assert json.loads(first_body)["status"] == "completed"

    downloads = CallCounter(s3, "GetObject", key)
    writes = CallCounter(s3, "PutObject")
    engine = StubEngine()
    # A fresh runner with a stand-in engine: any transcription would show up as a call.
    stub_runner(job_settings, s3, engine).handle(record)
    runner.handle(record)

    assert (downloads.count, writes.count, engine.calls) == (0, 0, 0)
    again = s3.get_object(Bucket=BUCKET, Key="transcripts/dup.wav.json")
    assert again["ETag"] == first["ETag"]
    assert again["Body"].read() == first_body


def test_new_upload_under_the_same_key_is_transcribed_again(runner: JobRunner, s3: Any) -> None:
    key = "uploads/same key.wav"
    old = put_upload(s3, BUCKET, key, clip("sr_english.wav").path.read_bytes())
    runner.handle(old)
    first = read_result(s3, BUCKET, "transcripts/same key.wav.json")
    assert isinstance(first, CompletedJob)
    assert normalise(first.text) in {"1 2 3", "one two three"}, first.text

    french = clip("stp-fr-02.wav")
    new = put_upload(s3, BUCKET, key, french.path.read_bytes())
    assert new.etag != old.etag
    runner.handle(new)
    second = read_result(s3, BUCKET, "transcripts/same key.wav.json")
    assert isinstance(second, CompletedJob)
    assert second.source.etag == new.etag
    assert second.language == "fr"
    assert wer(french.reference, second.text) < 0.5, second.text

    # The old upload's event arriving late changes nothing.
    writes = CallCounter(s3, "PutObject")
    runner.handle(old)
    assert writes.count == 0
    assert read_result(s3, BUCKET, "transcripts/same key.wav.json") == second


def test_same_bytes_with_another_language_is_a_new_job(job_settings: Settings, s3: Any) -> None:
    engine = StubEngine()
    runner = stub_runner(job_settings, s3, engine)
    body = clip("sr_english.wav").path.read_bytes()
    first = put_upload(s3, BUCKET, "uploads/lang.wav", body, language="en")
    runner.handle(first)
    second = put_upload(s3, BUCKET, "uploads/lang.wav", body, language="fr")
    assert second.etag == first.etag  # same bytes, same ETag
    runner.handle(second)
    doc = read_result(s3, BUCKET, "transcripts/lang.wav.json")
    assert isinstance(doc, CompletedJob)
    assert (engine.calls, doc.options.language, doc.language) == (2, "fr", "fr")


@pytest.mark.parametrize(
    ("body", "language", "overrides", "error_type", "downloads"),
    [
        pytest.param(b"RIFF\x00\x01 this is not audio" * 64, None, {}, "unsupported_media", 1, id="corrupt"),
        pytest.param(b"", None, {}, "empty_file", 1, id="empty"),
        pytest.param(None, None, {"max_job_upload_bytes": 1000}, "file_too_large", 0, id="too-large"),
        pytest.param(None, None, {"max_job_audio_seconds": 1.0}, "audio_too_long", 1, id="too-long"),
        pytest.param(None, "klingon", {}, "unknown_language", 0, id="bad-language"),
    ],
)
def test_permanent_failure_writes_failed_result_and_is_not_retried(
    make_settings,
    s3: Any,
    tmp_audio_dir: Path,
    body: bytes | None,
    language: str | None,
    overrides: dict,
    error_type: str,
    downloads: int,
) -> None:
    settings = make_settings(bucket=BUCKET, **overrides)
    engine = StubEngine()
    runner = stub_runner(settings, s3, engine)
    body = clip("sr_english.wav").path.read_bytes() if body is None else body
    key = "uploads/bad input.wav"
    record = put_upload(s3, BUCKET, key, body, language=language)
    gets = CallCounter(s3, "GetObject", key)

    runner.handle(record)  # returns: a retry cannot help

    doc = read_result(s3, BUCKET, "transcripts/bad input.wav.json")
    assert isinstance(doc, FailedJob)
    assert doc.error.type == error_type
    assert doc.error.message
    assert "service-tmp" not in doc.error.message  # no server paths leak into results
    assert doc.source.etag == record.etag
    assert (gets.count, engine.calls) == (downloads, 0)
    written = result_versions(s3, BUCKET, "transcripts/bad input.wav.json")

    runner.handle(record)  # a redelivery of a failed upload does nothing
    assert gets.count == downloads
    assert result_versions(s3, BUCKET, "transcripts/bad input.wav.json") == written
    assert_clean(s3, tmp_audio_dir, {key: body})


def test_transient_s3_failure_on_download_raises_and_leaves_no_result(
    runner: JobRunner, s3: Any, tmp_audio_dir: Path
) -> None:
    key = "uploads/throttled.wav"
    body = clip("sr_english.wav").path.read_bytes()
    record = put_upload(s3, BUCKET, key, body)
    hits = slow_down(s3, "GetObject", lambda request: "/uploads/" in request.url)

    with pytest.raises(ClientError) as raised:
        runner.handle(record)

    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert len(hits) == 2  # botocore retried (s3_max_attempts=2) before giving up
    assert keys(s3, BUCKET, "transcripts/") == []

    # Lambda's retry, once S3 recovers, completes the job: nothing was lost.
    s3.meta.events.unregister("before-send.s3.GetObject", unique_id="slow-GetObject")
    assert_clean(s3, tmp_audio_dir, {key: body})
    runner.handle(record)
    assert isinstance(read_result(s3, BUCKET, "transcripts/throttled.wav.json"), CompletedJob)


def test_transient_failure_on_the_final_write_raises_and_the_retry_completes(
    job_settings: Settings, s3: Any, tmp_audio_dir: Path
) -> None:
    engine = StubEngine()
    runner = stub_runner(job_settings, s3, engine)
    key = "uploads/late failure.wav"
    body = clip("sr_english.wav").path.read_bytes()
    record = put_upload(s3, BUCKET, key, body)
    slow_down_call(s3, "PutObject", lambda params: b'"status":"completed"' in params["body"].getvalue())

    with pytest.raises(ClientError):
        runner.handle(record)
    doc = read_result(s3, BUCKET, "transcripts/late failure.wav.json")
    assert isinstance(doc, ProcessingJob)  # the claim, never a failed result that would stop the retry
    assert list(tmp_audio_dir.iterdir()) == []

    s3.meta.events.unregister("before-call.s3.PutObject", unique_id="slow-PutObject")
    runner.handle(record)
    assert isinstance(read_result(s3, BUCKET, "transcripts/late failure.wav.json"), CompletedJob)
    assert engine.calls == 2
    assert_clean(s3, tmp_audio_dir, {key: body})


def test_transient_service_error_raises_without_a_failed_result(
    job_settings: Settings, s3: Any, tmp_audio_dir: Path
) -> None:
    runner = stub_runner(job_settings, s3, StubEngine(error=InsufficientStorage()))
    record = put_upload(s3, BUCKET, "uploads/disk full.wav", clip("sr_english.wav").path.read_bytes())
    with pytest.raises(InsufficientStorage):
        runner.handle(record)
    assert not isinstance(read_result(s3, BUCKET, "transcripts/disk full.wav.json"), FailedJob)
    assert list(tmp_audio_dir.iterdir()) == []


def test_progress_is_written_while_transcribing(job_settings: Settings, s3: Any) -> None:
    # The service reports progress piece by piece: a minute of speech is cut into several.
    steps = (0.2, 0.4, 0.6, 0.8, 1.0)
    runner = stub_runner(job_settings, s3, StubEngine(steps=steps, delay_s=0.1))
    long = clip("long-fr-fleurs-000-004.webm")
    runner.handle(put_upload(s3, BUCKET, "uploads/long.wav", long.path.read_bytes()))

    docs = result_versions(s3, BUCKET, "transcripts/long.wav.json")
    assert isinstance(docs[-1], CompletedJob)
    processing = [d for d in docs if isinstance(d, ProcessingJob)]
    progress = [d.progress for d in processing]
    assert len(processing) >= 5, progress  # 0.5 s of work per piece, a heartbeat every 0.1 s
    assert progress == sorted(progress)
    assert progress[0] == 0
    assert any(0 < p < 1 for p in progress), progress
    assert all(0 <= p <= 1 for p in progress)
    times = [d.updated_at for d in docs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.1 + 1.0, gaps  # the interval plus generous slack for a loaded machine


def test_progress_interval_is_capped_at_30_seconds(make_settings) -> None:
    with pytest.raises(ValidationError):
        make_settings(progress_interval_s=31)


def test_stale_delivery_never_overwrites_a_newer_uploads_result(job_settings: Settings, s3: Any) -> None:
    key = "uploads/raced.wav"
    old = put_upload(s3, BUCKET, key, clip("sr_english.wav").path.read_bytes())
    newer: list[ObjectCreated] = []

    def replace_upload_mid_transcription(call: int, fraction: float) -> None:
        # While the first delivery transcribes, the user uploads again and that event is handled.
        if call == 1 and not newer:
            newer.append(put_upload(s3, BUCKET, key, clip("stp-fr-14.wav").path.read_bytes()))
            runner.handle(newer[0])

    # The delay lets a heartbeat of the old delivery run after the new result is written.
    engine = StubEngine(hook=replace_upload_mid_transcription, delay_s=0.3)
    runner = stub_runner(job_settings, s3, engine)
    runner.handle(old)

    doc = read_result(s3, BUCKET, "transcripts/raced.wav.json")
    assert isinstance(doc, CompletedJob)
    assert doc.source.etag == newer[0].etag
    assert doc.text == "stub transcript 2"
    # The old delivery stopped: no document for the old upload was written after the new one.
    versions = result_versions(s3, BUCKET, "transcripts/raced.wav.json")
    first_new = next(i for i, d in enumerate(versions) if d.source.etag == doc.source.etag)
    assert all(d.source.etag == doc.source.etag for d in versions[first_new:])
    assert engine.calls == 2


def test_concurrent_duplicate_deliveries_leave_one_complete_result(make_settings, s3: Any) -> None:
    both_transcribing = threading.Barrier(2, timeout=30)

    def hold(call: int, fraction: float) -> None:
        if fraction == 0.5:
            both_transcribing.wait()  # both deliveries are past their claim and mid-transcription
            if call == 2:
                time.sleep(0.6)  # so the second finishes well after the first has written

    engine = StubEngine(steps=(0.5, 0.75, 1.0), delay_s=0.2, hook=hold)
    # No heartbeat in this window: moto's conditional checks are not atomic across threads (S3's
    # are), so the test keeps the two final writes apart in time instead.
    runner = stub_runner(make_settings(bucket=BUCKET, progress_interval_s=10), s3, engine)
    record = put_upload(s3, BUCKET, "uploads/twice.wav", clip("sr_english.wav").path.read_bytes())
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            runner.handle(record)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert engine.calls == 2
    docs = result_versions(s3, BUCKET, "transcripts/twice.wav.json")  # each one parses as a whole
    assert isinstance(docs[-1], CompletedJob)
    assert docs[-1].source.etag == record.etag
    first_done = next(i for i, d in enumerate(docs) if isinstance(d, CompletedJob))
    # Once a result is complete, no delivery writes progress or another result over it.
    assert first_done == len(docs) - 1, [d.status for d in docs]


def _no_http(event: Any, context: Any) -> None:
    raise AssertionError("no HTTP event was sent")


def _no_chunks() -> Any:
    raise AssertionError("no chunk message was sent")


@pytest.mark.parametrize(
    ("key", "event_name"),
    [
        ("transcripts/x.wav.json", "ObjectCreated:Put"),
        ("elsewhere/x.wav", "ObjectCreated:Put"),
        ("uploads/folder/", "ObjectCreated:Put"),
        ("uploads/x.wav", "ObjectRemoved:Delete"),
    ],
)
def test_records_the_runner_must_not_act_on_are_ignored(
    runner: JobRunner, s3: Any, key: str, event_name: str
) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    head = s3.head_object(Bucket=BUCKET, Key=key)
    writes = CallCounter(s3, "PutObject")
    reads = CallCounter(s3, "HeadObject")
    dispatch = Dispatcher(http=_no_http, runner=lambda: runner, chunk_worker=_no_chunks)
    assert dispatch({"Records": [s3_record(BUCKET, key, head["ETag"], 0, event_name)]}, None) == {
        "records": 1
    }
    assert (writes.count, reads.count) == (0, 0)


def test_a_deleted_upload_is_skipped(runner: JobRunner, s3: Any) -> None:
    record = put_upload(s3, BUCKET, "uploads/gone.wav", b"whatever")
    s3.delete_object(Bucket=BUCKET, Key="uploads/gone.wav")
    runner.handle(record)
    assert keys(s3, BUCKET, "transcripts/") == []


def test_settings_keep_results_out_of_the_upload_prefix(make_settings) -> None:
    for upload, result in [("uploads/", "uploads/results/"), ("uploads/", "up"), ("in/", "in/")]:
        with pytest.raises(ValidationError, match="must not overlap"):
            make_settings(upload_prefix=upload, result_prefix=result)
    assert make_settings(upload_prefix="in/", result_prefix="out/").result_prefix == "out/"


def test_s3_records_unwraps_direct_sqs_and_sns_events_and_skips_test_events() -> None:
    record = s3_record(BUCKET, "uploads/a b+c.wav", "abc", 3)
    direct = {"Records": [record]}
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}
    sqs = {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "1", "body": json.dumps(test_event)},
            {"eventSource": "aws:sqs", "messageId": "2", "body": json.dumps(direct)},
        ]
    }
    sns_in_sqs = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "body": json.dumps({"Type": "Notification", "Message": json.dumps(direct)}),
            }
        ]
    }
    assert [r.raw for r in s3_records(direct)] == [record]
    assert [r.raw for r in s3_records(sqs)] == [record]
    assert [r.raw for r in s3_records(sns_in_sqs)] == [record]
    assert list(s3_records(test_event)) == []
    parsed = parse_record(record)
    assert parsed is not None
    assert (parsed.key, parsed.etag, parsed.size) == ("uploads/a b+c.wav", "abc", 3)
