"""Fan-out in process: the cut, duplicates, two merges at once, and a chunk stuck after its last delivery.

moto's in-process S3 and SQS (mock_aws), the real engine on recordings joined from ../shared/audio.
tests/aws_lambda/test_fanout_rie.py runs the same code under the real runtime with two workers; these are
the cases that need a hand on the timing (a barrier in botocore's event hooks) or on a fault.
"""

import base64
import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from chatserver.core.settings import Settings
from chatserver.jobs.chunk_worker import ChunkWorker
from chatserver.jobs.chunks import cut_at_silences, frame_power_db
from chatserver.jobs.documents import CompletedJob, JobOptions, ProcessingJob
from chatserver.jobs.fanout import ChunkMessage, make_sqs_client, parse_chunk_message, work_prefix
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import ObjectCreated, make_s3_client
from chatserver.speech.audio import SAMPLE_RATE, decode, ffmpeg_executable
from chatserver.speech.segmentation import SpeechDetection, speech_spans
from chatserver.speech.service import TranscriptionService
from chatserver.speech.transcript import DecodedSegment, Transcript
from tests.support.corpus import clip
from tests.support.engines import EngineWrapper
from tests.support.long_audio import Recording, clips_of, join
from tests.support.receiver import callback_receiver
from tests.support.s3 import fake_aws_env, keys, put_upload, read_result

BUCKET = "chatserver-fanout-unit"
KEY = "uploads/talk.flac"


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    # Every English clip, twice: about 120 s, so at least 3 chunks of at most 45 s.
    return join(clips_of("en"), tmp_path_factory.mktemp("audio") / "english.flac", min_seconds=100)


FAN_SETTINGS: dict[str, Any] = {
    "bucket": BUCKET,
    "chunk_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/chunks",
    "fanout_min_seconds": 60,
    "chunk_seconds": 45,
    "chunk_search_seconds": 10,
    "beam_size": 1,
    "s3_max_attempts": 1,
}


@pytest.fixture
def fan_settings(make_settings) -> Settings:
    return make_settings(**FAN_SETTINGS)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, fan_settings: Settings) -> Iterator[tuple[Any, Any]]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        s3 = make_s3_client(fan_settings)
        s3.create_bucket(Bucket=BUCKET)
        sqs = make_sqs_client(fan_settings)
        url = sqs.create_queue(QueueName="chunks")["QueueUrl"]
        assert url.endswith("/chunks")
        yield s3, sqs


@pytest.fixture
def runner(fan_settings: Settings, aws: tuple[Any, Any]) -> JobRunner:
    service = TranscriptionService.from_settings(fan_settings)
    return JobRunner(service, fan_settings, aws[0])


def _split(
    runner: JobRunner, aws: tuple[Any, Any], recording: Recording, metadata: dict[str, str] | None = None
) -> list[ChunkMessage]:
    s3, sqs = aws
    body = recording.path.read_bytes()
    put = s3.put_object(Bucket=BUCKET, Key=KEY, Body=body, Metadata={"language": "en", **(metadata or {})})
    runner.handle(ObjectCreated(BUCKET, KEY, put["ETag"].strip('"'), len(body)))
    url = runner.context.settings.chunk_queue_url
    messages: list[ChunkMessage] = []
    while received := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in received:
            messages.append(parse_chunk_message(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(messages, key=lambda m: m.index)


def _transcriptions(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        r.name == "chatserver.speech.service" and r.getMessage().startswith("transcribed")
        for r in caplog.records
    )


def test_cuts_cover_the_recording_and_fall_in_pauses_not_in_words() -> None:
    # One continuous real recording (pauses between sentences, no added silence), cut as if
    # its 63 s were an hour: 20 s chunks, the cut searched in the last 8 s of each.
    samples = decode(
        clip("long-fr-fleurs-000-004.webm").path,
        ffmpeg=ffmpeg_executable(None),
        timeout_s=60,
        max_seconds=600,
    )
    cuts = cut_at_silences(samples, max_chunk_s=20, search_s=8)
    assert cuts[0].start == 0
    assert cuts[-1].end == samples.size
    assert all(a.end == b.start for a, b in itertools.pairwise(cuts))
    assert all(c.end - c.start <= 20 * SAMPLE_RATE for c in cuts)
    assert all(c.end - c.start >= 12 * SAMPLE_RATE for c in cuts[:-1])
    # Silero VAD (segmentation.py) as an independent judge of where words are, with little padding.
    spans = speech_spans(samples, SpeechDetection(pad_s=0.05), max_span_s=30)
    for cut in cuts[:-1]:
        inside = [s for s in spans if s.start + 0.05 * SAMPLE_RATE < cut.end < s.end - 0.05 * SAMPLE_RATE]
        assert not inside, (cut.end_s, [(s.start_s, s.end_s) for s in inside])
    speech_db = float(frame_power_db(samples).max())
    assert all(c.level_db < speech_db - 25 for c in cuts[:-1]), [c.level_db for c in cuts]


def test_duplicate_chunk_message_finds_its_part_and_transcribes_nothing(
    runner: JobRunner, aws: tuple[Any, Any], english: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    s3, _ = aws
    messages = _split(runner, aws, english)
    assert len(messages) >= 3
    worker = ChunkWorker(runner)
    caplog.set_level(logging.INFO)
    worker.handle(messages[0])
    part = s3.head_object(Bucket=BUCKET, Key=messages[0].part_key)["ETag"]
    done = _transcriptions(caplog)
    assert done == 1
    worker.handle(messages[0])
    assert _transcriptions(caplog) == done
    assert s3.head_object(Bucket=BUCKET, Key=messages[0].part_key)["ETag"] == part
    doc = read_result(s3, BUCKET, "transcripts/talk.flac.json")
    assert isinstance(doc, ProcessingJob)
    assert doc.chunks == len(messages)
    assert doc.progress == pytest.approx((messages[0].end - messages[0].start) / english.duration, abs=1e-3)


def test_two_workers_that_both_see_every_part_leave_one_result(
    runner: JobRunner, aws: tuple[Any, Any], english: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    s3, _ = aws
    messages = _split(runner, aws, english)
    worker = ChunkWorker(runner)
    for message in messages[:-2]:
        worker.handle(message)
    # Both last chunks list the parts only once both parts are written, and go on only once
    # both have listed: both see every part and both merge, the worst case of "finishing together".
    before, after = threading.Barrier(2, timeout=120), threading.Barrier(2, timeout=120)

    def hold_before_listing(params: dict, **_: Any) -> None:
        if "/parts/" in params.get("Prefix", ""):
            before.wait()

    def hold_after_listing(parsed: dict, **_: Any) -> None:
        if "/parts/" in parsed.get("Prefix", ""):
            after.wait()

    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", hold_before_listing)
    s3.meta.events.register("after-call.s3.ListObjectsV2", hold_after_listing)
    caplog.set_level(logging.INFO)
    errors: list[BaseException] = []

    def run(message: ChunkMessage) -> None:
        try:
            worker.handle(message)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in messages[-2:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    s3.meta.events.unregister("provide-client-params.s3.ListObjectsV2", hold_before_listing)
    s3.meta.events.unregister("after-call.s3.ListObjectsV2", hold_after_listing)
    assert not errors, errors
    merged = [
        r for r in caplog.records if "merged" in r.getMessage() and "parts into the result" in r.getMessage()
    ]
    # The other merge loses in one of three places, depending on how far the winner got: its
    # conditional write fails, it finds the result completed, or the parts are already gone.
    lost = (
        "another delivery wrote the result first",
        "the job is already completed; no merge",
        "another worker merged or the upload was replaced",
    )
    dropped = [r for r in caplog.records if any(text in r.getMessage() for text in lost)]
    assert len(merged) == 1, [r.getMessage() for r in caplog.records]
    assert len(dropped) == 1, [r.getMessage() for r in caplog.records]
    doc = read_result(s3, BUCKET, "transcripts/talk.flac.json")
    assert isinstance(doc, CompletedJob)
    assert doc.chunks == len(messages)
    # The text joined as one pass joins it: the segments as they are, no space added at a cut.
    assert doc.text == "".join(s.text for s in doc.segments).strip()
    assert keys(s3, BUCKET, "work/") == []


def test_chunks_join_as_one_pass_joins_them_in_chinese_too() -> None:
    # The merge builds its text with Transcript.of_segments, as one pass does. Whisper puts no
    # space between Chinese segments; the merge once put one at every cut (no Chinese audio in
    # ../shared/audio, so the segments here are written by hand).
    def two(first: str, second: str) -> list[DecodedSegment]:
        return [DecodedSegment(start=0, end=2, text=first), DecodedSegment(start=180, end=182, text=second)]

    chinese, english = two("你好。", "谢谢。"), two(" Hello.", " Thanks.")
    assert Transcript.of_segments(chinese, "zh", 182.0).text == "你好。谢谢。"
    assert Transcript.of_segments(english, "en", 182.0).text == "Hello. Thanks."


def test_the_last_delivery_of_a_failing_chunk_names_it_stuck(
    runner: JobRunner, aws: tuple[Any, Any], english: Recording, fan_settings: Settings
) -> None:
    s3, _ = aws
    messages = _split(runner, aws, english)
    stuck = messages[1]

    # A network fault on reading the chunk: transient, so the worker raises for SQS to redeliver.
    def unreachable(params: dict, **_: Any) -> None:
        if params.get("Key") == stuck.chunk_key:
            raise EndpointConnectionError(endpoint_url="https://s3.example")

    s3.meta.events.register("provide-client-params.s3.GetObject", unreachable)
    worker = ChunkWorker(runner)
    for delivery in range(1, fan_settings.chunk_max_receives + 1):
        with pytest.raises(EndpointConnectionError):
            worker.handle(stuck, receive_count=delivery)
        doc = read_result(s3, BUCKET, "transcripts/talk.flac.json")
        assert isinstance(doc, ProcessingJob)
        if delivery < fan_settings.chunk_max_receives:
            assert doc.stuck == []
    (named,) = doc.stuck
    assert (named.index, named.start, named.end) == (stuck.index, stuck.start, stuck.end)
    assert "Could not connect" in named.error
    # A redrive after the fault is fixed finishes the job.
    s3.meta.events.unregister("provide-client-params.s3.GetObject", unreachable)
    for message in messages:
        worker.handle(message)
    assert isinstance(read_result(s3, BUCKET, "transcripts/talk.flac.json"), CompletedJob)


def test_short_uploads_stay_one_pass(runner: JobRunner, aws: tuple[Any, Any], tmp_audio_dir: Path) -> None:
    s3, _ = aws
    jfk = clip("jfk.flac")
    runner.handle(put_upload(s3, BUCKET, "uploads/jfk.flac", jfk.path.read_bytes()))
    doc = read_result(s3, BUCKET, "transcripts/jfk.flac.json")
    assert isinstance(doc, CompletedJob)
    assert doc.chunks == 1
    assert keys(s3, BUCKET, "work/") == []
    assert list(tmp_audio_dir.iterdir()) == []


def test_work_prefix_may_not_overlap_uploads_or_results(make_settings) -> None:
    for prefix in ("uploads/", "transcripts/"):
        with pytest.raises(ValueError, match="must not overlap"):
            make_settings(work_prefix=prefix)


class _OptionsSpy(EngineWrapper):
    """The real engine, recording the options of every call."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.calls: list[Any] = []

    def transcribe(self, audio, options, progress=None, on_segment=None):
        self.calls.append(options)
        return self.engine.transcribe(audio, options, progress, on_segment)


def test_options_reach_every_chunk_and_the_merging_worker_calls_back(
    make_settings, aws: tuple[Any, Any], english: Recording
) -> None:
    s3, _ = aws
    secret = "fan-out-callback-secret-0123456789"
    settings = make_settings(**FAN_SETTINGS, callback_secret=secret, callback_allow_private=True)
    spy = _OptionsSpy(TranscriptionService.from_settings(settings).engine)
    runner = JobRunner(TranscriptionService(settings, spy), settings, s3)
    prompt = "Fellow Americans, Jürgen."
    with callback_receiver() as receiver:
        metadata = {
            "task": "translate",
            "word-timestamps": "true",
            "prompt": f"=?UTF-8?B?{base64.b64encode(prompt.encode()).decode()}?=",
            "callback-url": receiver.url,
        }
        messages = _split(runner, aws, english, metadata)
        assert len(messages) >= 3
        # Every chunk message carries the job's options.
        for message in messages:
            assert (message.options.task, message.options.word_timestamps) == ("translate", True)
            assert (message.options.prompt, message.options.callback_url) == (prompt, receiver.url)
        # The same bytes with other options are another version: their work objects apart.
        plain = work_prefix(settings, "talk.flac", messages[0].source.etag, JobOptions(language="en"))
        assert messages[0].work.startswith(plain.rstrip("/") + ".")
        worker = ChunkWorker(runner)
        for message in messages:
            worker.handle(message)
        (call,) = receiver.wait_for(1)
        time.sleep(0.3)
        assert len(receiver.received) == 1  # one merge, one callback

    # Each chunk was transcribed with the options; the prompt conditioned the first window of
    # the recording only (chunk 1's first piece), as in one pass.
    assert spy.calls
    assert all(c.task == "translate" and c.word_timestamps and c.language == "en" for c in spy.calls)
    assert spy.calls[0].prompt == prompt
    assert [c.prompt for c in spy.calls[1:]] == [None] * (len(spy.calls) - 1)
    doc = read_result(s3, BUCKET, "transcripts/talk.flac.json")
    assert isinstance(doc, CompletedJob)
    assert doc.chunks == len(messages)
    assert doc.options.prompt == prompt
    for segment in doc.segments:  # words on the recording's timeline, in every chunk
        assert segment.words, segment
        assert all(segment.start - 0.5 <= w.start <= w.end <= segment.end + 0.5 for w in segment.words)
    assert doc.segments[-1].end > messages[-1].start
    # The callback, signed, from the worker that merged; its delivery recorded over the result.
    expected = "sha256=" + hmac.new(secret.encode(), call.body, hashlib.sha256).hexdigest()
    assert call.headers["x-chatserver-signature"] == expected
    body = json.loads(call.body)
    assert (body["job_id"], body["status"]) == ("talk.flac", "completed")
    assert body["status_url"] == f"s3://{BUCKET}/transcripts/talk.flac.json"
    assert doc.callback is not None
    assert doc.callback.attempts == 1
    assert doc.callback.delivered_at is not None
    assert keys(s3, BUCKET, "work/") == []
