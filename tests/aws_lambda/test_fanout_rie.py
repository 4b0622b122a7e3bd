"""Fan-out of long S3 uploads under the real runtime: two aws-lambda-rie workers fed from a moto SQS queue.

infra/emulation/pump.py's Pump plays the chunk queue's event source mapping (batch size 1,
delete on success, redelivery after the visibility timeout on failure). S3 events reach the
workers through the same queue, as SQS-wrapped S3 notifications. Recordings are built in the run
by joining the clips of ../shared/audio; chunks are 60 s so that a 3-minute recording exercises
the mechanism (the defaults are sized for hours; README).
"""

import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from chatserver.core.settings import Settings
from chatserver.speech.service import TranscriptionService
from emulation.emulator import Emulator
from emulation.events import s3_put_event
from emulation.pump import Pump
from tests.support.corpus import clip, wer
from tests.support.long_audio import Recording, clips_of, join
from tests.support.receiver import callback_receiver
from tests.support.s3 import keys, moto_server, result_versions
from tests.support.servers import require_emulator

# Two emulators, a moto server and a 3-minute recording per runtime: over a minute and a half.
pytestmark = [pytest.mark.emulator, pytest.mark.s3server, pytest.mark.slow]

require_emulator()

BUCKET = "chatserver-fanout-test"
REGION = "us-east-1"
CHUNK_S = 60
CALLBACK_SECRET = "rie-fan-out-callback-secret-0123456789"
# Same options in the workers and in the one-pass reference: greedy, the machine is shared.
FANOUT_ENV = {
    "CHATSERVER_FANOUT_MIN_SECONDS": "90",
    "CHATSERVER_CHUNK_SECONDS": str(CHUNK_S),
    "CHATSERVER_CHUNK_SEARCH_SECONDS": "15",
    "CHATSERVER_BEAM_SIZE": "1",
    "CHATSERVER_CHUNK_MAX_RECEIVES": "3",
    # Callbacks to the test's receiver on 127.0.0.1.
    "CHATSERVER_CALLBACK_SECRET": CALLBACK_SECRET,
    "CHATSERVER_CALLBACK_ALLOW_PRIVATE": "true",
}


def _result_key(upload_key: str) -> str:
    return f"transcripts/{upload_key.removeprefix('uploads/')}.json"


@dataclass
class Cluster:
    s3: Any
    sqs: Any
    queue_url: str
    workers: list[Emulator]
    pump: Pump
    # Called by the pump with (worker, message) just before each delivery.
    hooks: list[Callable[[int, dict], None]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def logs(self) -> list[dict]:
        lines = []
        for worker in self.workers:
            for line in worker.log_text().splitlines():
                if line.startswith("{"):
                    try:
                        lines.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        return lines

    def upload(self, key: str, path: Path, metadata: dict[str, str] | None = None) -> str:
        put = self.s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes(), Metadata=metadata or {})
        etag = put["ETag"].strip('"')
        event = s3_put_event(BUCKET, quote_plus(key), path.stat().st_size, etag)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))
        return etag

    def wait_idle(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        quiet_since = None
        while time.monotonic() < deadline:
            # Idle twice in a row, 1 s apart: a message between receive and delete shows as neither.
            if self.pump.idle():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.5:
                    return
            else:
                quiet_since = None
            time.sleep(0.5)
        raise TimeoutError(f"queue not drained in {timeout_s} s; deliveries: {self.pump.deliveries}")

    def result(self, key: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key=_result_key(key))["Body"].read())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, runtime: str) -> Iterator[Cluster]:
    # A fresh server for each runtime: the reset empties what the other runtime's run left.
    with moto_server() as moto:
        endpoint = moto.endpoint
        s3 = moto.client("s3", REGION)
        sqs = moto.client("sqs", REGION)
        s3.create_bucket(Bucket=BUCKET)
        # Versioning keeps every result document written, so the test can read the progress history.
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        queue_url = sqs.create_queue(QueueName="chunks")["QueueUrl"]
        logs = tmp_path_factory.mktemp("fanout-rie")
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "CHATSERVER_BUCKET": BUCKET,
            "CHATSERVER_S3_ENDPOINT_URL": endpoint,
            "CHATSERVER_SQS_ENDPOINT_URL": endpoint,
            "CHATSERVER_CHUNK_QUEUE_URL": queue_url,
            "CHATSERVER_LOG_JSON": "true",
            **FANOUT_ENV,
        }
        workers = [
            Emulator(log=logs / f"worker-{k}.log", timeout_s=120, env=env, python=runtime) for k in range(2)
        ]
        pump = Pump(sqs, queue_url, workers, visibility_s=10, region=REGION)
        cluster = Cluster(s3, sqs, queue_url, workers, pump)

        def on_delivery(worker: int, message: dict) -> None:
            cluster.bodies.append(message["Body"])
            for hook in list(cluster.hooks):
                hook(worker, message)

        pump.on_delivery = on_delivery
        try:
            for worker in workers:
                worker.start()
            pump.start()
            yield cluster
        finally:
            pump.stop()
            for worker in workers:
                worker.stop()


@pytest.fixture(scope="session")
def french(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    # Every French clip once: about 3 minutes, so 4 chunks of at most 60 s.
    return join(clips_of("fr"), tmp_path_factory.mktemp("audio") / "french.flac")


@pytest.fixture(scope="session")
def one_pass_wer(french: Recording) -> float:
    """The same recording in one pass, in process, with the workers' options."""
    service = TranscriptionService.from_settings(Settings(beam_size=1))
    return wer(
        french.reference, service.transcribe(french.path, service.options(None), max_seconds=3600).text
    )


def _chunk_messages(cluster: Cluster, key: str) -> list[dict]:
    return [
        body
        for body in (json.loads(b) for b in cluster.bodies)
        if body.get("kind") == "chatserver.chunk" and body["key"] == key
    ]


def test_long_upload_is_cut_fanned_out_to_two_workers_and_merged_once(
    cluster: Cluster, french: Recording, one_pass_wer: float
) -> None:
    key = "uploads/french talk.flac"
    with callback_receiver() as receiver:
        etag = cluster.upload(key, french.path, {"callback-url": receiver.url})
        cluster.wait_idle()
        calls = list(receiver.received)
    result = cluster.result(key)
    assert result["status"] == "completed", result
    assert result["source"]["etag"] == etag
    assert result["language"] == "fr"  # detected once, on the first speech
    assert result["chunks"] == len(_chunk_messages(cluster, key)) >= 3
    assert result["duration"] == pytest.approx(french.duration, abs=0.05)
    # Same schema as a single pass, plus chunks (and the callback asked for).
    assert set(result) == {
        "schema", "status", "job_id", "updated_at", "source", "options", "created_at", "started_at",
        "chunks", "text", "language", "duration", "segments", "engine", "model", "finished_at",
        "processing_seconds", "callback",
    }  # fmt: skip
    # The merging worker called back once, signed, after the result was written, and recorded it.
    (call,) = calls
    expected = "sha256=" + hmac.new(CALLBACK_SECRET.encode(), call.body, hashlib.sha256).hexdigest()
    assert call.headers["x-chatserver-signature"] == expected
    body = json.loads(call.body)
    assert (body["job_id"], body["status"]) == ("french talk.flac", "completed")
    assert body["status_url"] == f"s3://{BUCKET}/{_result_key(key)}"
    assert result["callback"]["attempts"] == 1
    assert result["callback"]["delivered_at"] is not None
    segments = result["segments"]
    assert segments
    assert all(s["start"] <= s["end"] <= french.duration + 0.5 for s in segments), segments
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    # Both workers took chunks; every chunk was delivered and succeeded.
    chunk_ids = {d.message_id for d in cluster.pump.deliveries if d.succeeded}
    assert {d.worker for d in cluster.pump.deliveries} == {0, 1}
    assert len(chunk_ids) >= result["chunks"] + 1  # the S3 event's message too
    # Exactly one merge wrote the result; nothing is left under the work prefix.
    merges = [line for line in cluster.logs() if "merged_parts" in line]
    assert len(merges) == 1, merges
    assert keys(cluster.s3, BUCKET, "work/") == []
    # The upload was only read: one version, the one uploaded.
    versions = cluster.s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert [v["ETag"].strip('"') for v in versions] == [etag]
    # Progress, as the job's documents said it: the fraction of audio seconds done, rising.
    history = result_versions(cluster.s3, BUCKET, _result_key(key))
    progress = [doc.progress for doc in history if doc.status == "processing"]
    assert progress == sorted(progress), progress
    assert any(0 < p < 1 for p in progress), progress
    # Accuracy: within 0.02 of the same recording in one pass, with the same options.
    fanned, single = wer(french.reference, result["text"]), one_pass_wer
    sys.stdout.write(f"\n[fan-out] {result['chunks']} chunks: WER {fanned:.3f}, one pass {single:.3f}\n")
    assert fanned <= single + 0.02, (fanned, single)


def test_duplicate_chunk_messages_do_no_work(cluster: Cluster) -> None:
    key = "uploads/french talk.flac"
    before = cluster.s3.head_object(Bucket=BUCKET, Key=_result_key(key))["ETag"]
    transcribed = sum("audio_duration_s" in line for line in cluster.logs())
    for body in _chunk_messages(cluster, key):
        cluster.sqs.send_message(QueueUrl=cluster.queue_url, MessageBody=json.dumps(body))
    cluster.wait_idle()
    assert cluster.s3.head_object(Bucket=BUCKET, Key=_result_key(key))["ETag"] == before
    assert sum("audio_duration_s" in line for line in cluster.logs()) == transcribed
    assert keys(cluster.s3, BUCKET, "work/") == []


def test_replaced_upload_stops_old_chunks_and_the_new_upload_completes(
    cluster: Cluster, french: Recording
) -> None:
    key = "uploads/replaced.flac"
    jfk = clip("jfk.flac")
    replaced = threading.Event()

    def replace_on_first_chunk(worker: int, message: dict) -> None:
        body = json.loads(message["Body"])
        if body.get("kind") == "chatserver.chunk" and body["key"] == key and not replaced.is_set():
            replaced.set()
            cluster.upload(key, jfk.path)

    cluster.hooks.append(replace_on_first_chunk)
    try:
        cluster.upload(key, french.path)
        cluster.wait_idle()
    finally:
        cluster.hooks.remove(replace_on_first_chunk)
    assert replaced.is_set()
    result = cluster.result(key)
    assert result["status"] == "completed", result
    assert result["source"]["size"] == jfk.path.stat().st_size
    assert result["chunks"] == 1
    assert wer(jfk.reference, result["text"]) < 0.1, result
    stopped = [line for line in cluster.logs() if "replaced or deleted" in line.get("message", "")]
    assert stopped, "no old chunk noticed the replacement"
    assert keys(cluster.s3, BUCKET, "work/") == []


def test_a_chunk_that_fails_for_good_fails_the_job_naming_its_time_range(
    cluster: Cluster, french: Recording
) -> None:
    key = "uploads/broken chunk.flac"
    broken: list[dict] = []

    def corrupt_second_chunk(worker: int, message: dict) -> None:
        body = json.loads(message["Body"])
        if body.get("kind") == "chatserver.chunk" and body["key"] == key and body["index"] == 1:
            # As if the chunk had been damaged in storage: not audio any more.
            chunk = f"{body['work']}chunks/0001.flac"
            cluster.s3.put_object(Bucket=BUCKET, Key=chunk, Body=b"not audio at all" * 64)
            broken.append(body)

    cluster.hooks.append(corrupt_second_chunk)
    before = len(cluster.pump.deliveries)
    try:
        cluster.upload(key, french.path)
        cluster.wait_idle()
    finally:
        cluster.hooks.remove(corrupt_second_chunk)
    assert broken
    result = cluster.result(key)
    assert result["status"] == "failed", result
    assert result["error"]["type"] == "unsupported_media"
    start, end = broken[0]["start"], broken[0]["end"]
    span = f"({int(start // 60)}:{start % 60:04.1f}-{int(end // 60)}:{end % 60:04.1f})"
    assert f"chunk 2/{broken[0]['count']} {span}" in result["error"]["message"], result["error"]
    assert keys(cluster.s3, BUCKET, "work/") == []
    # Failed for good is not retried: every message was deleted at its first delivery.
    deliveries = cluster.pump.deliveries[before:]
    assert all(d.succeeded and d.receive_count == 1 for d in deliveries), deliveries


def test_a_worker_killed_mid_chunk_is_redelivered_and_the_job_completes(
    cluster: Cluster, french: Recording
) -> None:
    # Last in the module: worker 1 stays dead, as a crashed execution environment would.
    key = "uploads/killed.flac"
    killed = threading.Event()
    victim = cluster.workers[1]

    def kill_worker_one_mid_chunk(worker: int, message: dict) -> None:
        body = json.loads(message["Body"])
        if worker != 1 or body.get("kind") != "chatserver.chunk" or killed.is_set():
            return
        killed.set()
        started = victim.log_text().count("Processing audio")

        def kill_once_decoding() -> None:
            deadline = time.monotonic() + 60
            while victim.log_text().count("Processing audio") == started and time.monotonic() < deadline:
                time.sleep(0.05)
            os.killpg(victim.process.pid, signal.SIGKILL)

        threading.Thread(target=kill_once_decoding, daemon=True).start()

    cluster.hooks.append(kill_worker_one_mid_chunk)
    before = len(cluster.pump.deliveries)
    try:
        cluster.upload(key, french.path)
        cluster.wait_idle()
    finally:
        cluster.hooks.remove(kill_worker_one_mid_chunk)
    assert killed.is_set()
    assert not victim.alive()
    deliveries = cluster.pump.deliveries[before:]
    lost = [d for d in deliveries if d.worker == 1 and not d.succeeded]
    assert len(lost) == 1, deliveries
    redelivered = [d for d in deliveries if d.message_id == lost[0].message_id and d.succeeded]
    assert redelivered, deliveries
    assert redelivered[0].worker == 0
    assert redelivered[0].receive_count >= 2
    result = cluster.result(key)
    assert result["status"] == "completed", result
    assert keys(cluster.s3, BUCKET, "work/") == []
