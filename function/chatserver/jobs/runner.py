"""The S3 job runner: one ObjectCreated record in, one JSON result document out.

Delivery is at least once, so the runner is written to be run any number of times, at once or
late, for the same or an older upload:

- An upload version is its ETag plus its requested language. A completed or failed result for
  the same version means the work is done: a duplicate reads one small document and stops.
- The source is read with ``If-Match: <event ETag>`` and checked again before the final write,
  so a delivery for a replaced upload never writes over the newer upload's result.
- Every result write is a whole-document PutObject made conditional on the result ETag this
  delivery last saw (``If-None-Match: *`` when there was none). A write that loses re-reads and
  decides: a finished result for the same version wins over this delivery's work; a completed
  result wins over another delivery's progress; a result for another version is replaced only
  while this delivery's upload is still the current object.
- Permanent errors (undecodable, too large, too long, bad language) become a ``failed`` result
  and the runner returns. Anything else raises, so Lambda retries and then dead-letters the
  event; the ``processing`` document left behind is replaced by the retry.
- The runner only ever reads the upload: it never writes, copies or deletes under the upload prefix.
- With a chunk queue configured, an upload longer than ``fanout_min_seconds`` is cut into
  chunks and fanned out (fanout.py); chunk_worker.py finishes the job under the same rules.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ..aws_lambda.events import ObjectCreated, bare_etag, parse_record, s3_records
from ..core.errors import ChatServerError, ObjectTooLarge
from ..core.settings import Settings
from ..speech.audio import save_stream, temporary_audio_path
from ..speech.service import TranscriptionService
from ..speech.transcript import Transcript
from .documents import (
    CompletedJob,
    FailedJob,
    JobError,
    JobOptions,
    JobResult,
    ProcessingJob,
    RunResult,
    Source,
    StuckChunk,
    TerminalResult,
    utc_now,
)
from .fanout import FanOut
from .store import (
    LANGUAGE_METADATA,
    ResultStore,
    S3Client,
    WriteConflict,
    is_conflict,
    is_missing,
    make_s3_client,
    result_key,
)

logger = logging.getLogger(__name__)

# Conditional writes that keep losing mean other deliveries are writing too; past this, raise
# and let the event be retried rather than spin.
_MAX_WRITE_ATTEMPTS = 5


class JobRunner:
    def __init__(
        self, service: TranscriptionService, settings: Settings, s3_client: S3Client | None = None
    ) -> None:
        self.service = service
        self.settings = settings
        self.s3 = s3_client if s3_client is not None else make_s3_client(settings)
        self.results = ResultStore(self.s3)
        self.fanout = FanOut(settings, self.s3, service) if settings.chunk_queue_url else None

    def handle_event(self, event: dict[str, Any]) -> None:
        """Every S3 record of a direct or SQS-wrapped event, in order; the first transient error raises."""
        for record in s3_records(event):
            self.handle_record(record)

    def handle_record(self, record: dict[str, Any]) -> None:
        """Transcribe one uploaded object; raises only where a retry may succeed."""
        created = parse_record(record)
        if created is None:
            logger.warning("ignoring a record that is not an S3 ObjectCreated record: %.300s", record)
            return
        prefix = self.settings.upload_prefix
        if not created.key.startswith(prefix) or created.key.endswith("/"):
            # Folder markers and anything outside the watched prefix (our own results included).
            logger.info("ignoring s3://%s/%s: not an upload under %r", created.bucket, created.key, prefix)
            return
        _Job(self, created).run()


class _Superseded(Exception):
    """A newer upload, or another delivery's finished result, made this delivery's work moot."""


class _Decision(Enum):
    REPLACE = "replace"  # write ours over what is there
    SKIP = "skip"  # leave what is there, carry on (another delivery's progress)
    STOP = "stop"  # leave what is there, stop working


@dataclass(frozen=True)
class _Head:
    etag: str
    size: int
    language: str | None
    last_modified: datetime


class _Job:
    """One delivery of one record; not shared between threads except with its own heartbeat."""

    def __init__(self, runner: JobRunner, created: ObjectCreated) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.bucket = created.bucket
        self.key = created.key
        self.event_etag = created.etag
        self.job_id = created.key[len(self.settings.upload_prefix) :]
        self.result_key = result_key(self.settings, created.key)
        self.where = f"job {self.job_id!r} (s3://{self.bucket}/{self.key})"
        self.seen: str | None = None  # ETag of the result document as last read or written
        self.progress = 0.0
        self.chunks = 1
        self.stuck: list[StuckChunk] = []
        self.stopped = threading.Event()

    @classmethod
    def resume(
        cls,
        runner: JobRunner,
        source: Source,
        options: JobOptions,
        created_at: datetime,
        started_at: datetime,
        chunks: int,
    ) -> "_Job":
        """The job of a fanned-out upload, as a chunk worker continues it on another machine."""
        job = cls(runner, ObjectCreated(source.bucket, source.key, source.etag, source.size))
        job.source = source
        job.options = options
        job.created_at = created_at
        job.started_at = started_at
        job.chunks = chunks
        # processing_seconds counts from the runner's start, not from this worker's.
        job.clock = time.perf_counter() - (utc_now() - started_at).total_seconds()
        return job

    def run(self) -> None:
        head = self._head()
        if head is None:
            logger.info("%s: the object is gone; nothing to transcribe", self.where)
            return
        if self.event_etag and head.etag != self.event_etag:
            logger.info(
                "%s: replaced by a newer upload (ETag %s, event had %s)",
                self.where,
                head.etag,
                self.event_etag,
            )
            return
        self.source = Source(bucket=self.bucket, key=self.key, etag=head.etag, size=head.size)
        self.options = JobOptions(language=head.language)
        self.created_at = head.last_modified
        stored = self.runner.results.read(self.bucket, self.result_key)
        self.seen = stored.etag
        if isinstance(stored.doc, TerminalResult) and self._same_upload(stored.doc):
            logger.info(
                "%s: already %s for ETag %s; duplicate event ignored",
                self.where,
                stored.doc.status,
                head.etag,
            )
            return
        self.started_at = utc_now()
        self.clock = time.perf_counter()
        try:
            transcript = self._transcribe()
            if transcript is None:
                return  # fanned out: the chunk worker that writes the last part finishes the job
        except _Superseded as reason:
            logger.info("%s: stopped, %s", self.where, reason)
            return
        except ChatServerError as exc:
            if exc.transient:
                logger.warning(
                    "%s: transient %s, raising for a retry: %s", self.where, exc.error_type, exc.message
                )
                raise
            logger.info("%s: failed for good, %s: %s", self.where, exc.error_type, exc.message)
            self._finish(self._failed(exc))
            return
        self._finish(self._completed(transcript))

    def _transcribe(self) -> Transcript | None:
        service = self.runner.service
        # Options and size are checked before anything is downloaded, so bad uploads fail cheaply.
        options = service.options(self.options.language)
        if self.source.size > self.settings.max_job_upload_bytes:
            raise ObjectTooLarge(self.source.size, self.settings.max_job_upload_bytes)
        with temporary_audio_path(self.settings.tmp_dir) as path:
            self._download(path)
            if not self._write(self._processing()):
                raise _Superseded("another delivery or a newer upload owns the result")
            if self._fanned_out(path):
                return None
            heartbeat = _Heartbeat(self, self.settings.progress_interval_s)
            try:
                transcript = service.transcribe(
                    path, options, progress=self._on_progress, max_seconds=self.settings.max_job_audio_seconds
                )
            finally:
                heartbeat.stop()
        if self.stopped.is_set():
            raise _Superseded("another delivery finished first or the upload was replaced")
        return transcript

    def _fanned_out(self, path: Path) -> bool:
        """Cut a long upload into chunks and queue them; False: transcribe it here in one pass."""
        fanout = self.runner.fanout
        if fanout is None:
            return False
        # Decoded here and, for short uploads, again by the service: decoding is about 1% of
        # the transcription, and the service keeps one pipeline for every caller.
        samples = fanout.decode(path)
        if not fanout.wanted(samples):
            return False
        plan, work, split_s = fanout.plan(self.bucket, self.job_id, self.source, self.options, samples)
        del samples  # an hour is 230 MB of float32
        self.chunks = len(plan.chunks)
        # Written before the messages go, so no worker's progress is overwritten by this 0.
        if not self._write(self._processing()):
            raise _Superseded("another delivery or a newer upload owns the result")
        fanout.send(fanout.messages(self.bucket, self.key, plan, work, self.created_at, self.started_at))
        logger.info(
            "%s: %.0f s of %s audio cut into %d chunks in %.2f s and queued, work at s3://%s/%s",
            self.where,
            plan.duration,
            plan.language,
            self.chunks,
            split_s,
            self.bucket,
            work,
            extra={"split_s": round(split_s, 3), "chunks": self.chunks},
        )
        return True

    def _download(self, path: Path) -> None:
        try:
            # If-Match pins the exact upload version the event announced.
            response = self.runner.s3.get_object(
                Bucket=self.bucket, Key=self.key, IfMatch=f'"{self.source.etag}"'
            )
        except ClientError as exc:
            if is_conflict(exc) or is_missing(exc):
                raise _Superseded("the upload was replaced or deleted before it was read") from exc
            raise
        body = response["Body"]
        try:
            save_stream(body, path)  # 1 MiB at a time: memory stays flat whatever the size
        finally:
            body.close()

    def _on_progress(self, fraction: float) -> None:
        self.progress = max(self.progress, min(max(fraction, 0.0), 1.0))
        if self.stopped.is_set():
            # Raising inside the engine's loop is the only way to stop it early.
            raise _Superseded("another delivery finished first or the upload was replaced")

    def _finish(self, doc: TerminalResult) -> bool:
        """Write the final result under the conditional-write rules; True if this delivery's was written."""
        if not self._source_is_current():
            logger.info(
                "%s: the upload was replaced meanwhile; %s result not written", self.where, doc.status
            )
            return False
        if self._write(doc):
            logger.info(
                "%s: %s in %.2f s, result at s3://%s/%s",
                self.where,
                doc.status,
                doc.processing_seconds,
                self.bucket,
                self.result_key,
            )
            return True
        logger.info("%s: another delivery wrote the result first; ours dropped", self.where)
        return False

    def _write(self, doc: RunResult) -> bool:
        """Write ``doc`` unless another writer should win; False means stop working."""
        for _ in range(_MAX_WRITE_ATTEMPTS):
            try:
                self.seen = self.runner.results.write(self.bucket, self.result_key, doc, replaces=self.seen)
                return True
            except WriteConflict:
                stored = self.runner.results.read(self.bucket, self.result_key)
                self.seen = stored.etag
                decision = self._after_conflict(stored.doc, doc)
                logger.info(
                    "%s: result changed under us (%s), %s", self.where, _status(stored.doc), decision.value
                )
                if decision is _Decision.STOP:
                    return False
                if decision is _Decision.SKIP:
                    return True
        raise RuntimeError(f"{self.where}: the result kept changing under concurrent writers")

    def _after_conflict(self, current: JobResult | None, ours: RunResult) -> _Decision:
        if not isinstance(current, RunResult):
            return _Decision.REPLACE  # nothing, a pending marker, or not a result of ours
        if self._same_upload(current):
            if isinstance(current, TerminalResult):
                return _Decision.STOP
            return _Decision.REPLACE if isinstance(ours, TerminalResult) else _Decision.SKIP
        return _Decision.REPLACE if self._source_is_current() else _Decision.STOP

    def _same_upload(self, doc: RunResult) -> bool:
        return doc.source.etag == self.source.etag and doc.options == self.options

    def _source_is_current(self) -> bool:
        head = self._head()
        return head is not None and head.etag == self.source.etag and head.language == self.options.language

    def _head(self) -> _Head | None:
        try:
            response = self.runner.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        language = response.get("Metadata", {}).get(LANGUAGE_METADATA, "").strip() or None
        return _Head(
            bare_etag(response["ETag"]), response["ContentLength"], language, response["LastModified"]
        )

    def _run_fields(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "source": self.source,
            "options": self.options,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "chunks": self.chunks,
        }

    def _finished_fields(self) -> dict[str, Any]:
        return {"finished_at": utc_now(), "processing_seconds": round(time.perf_counter() - self.clock, 3)}

    def _processing(self) -> ProcessingJob:
        return ProcessingJob(**self._run_fields(), progress=round(self.progress, 4), stuck=self.stuck)

    def _completed(self, transcript: Transcript) -> CompletedJob:
        engine = self.runner.service.engine
        return CompletedJob(
            **self._run_fields(),
            **self._finished_fields(),
            text=transcript.text,
            language=transcript.language,
            duration=transcript.duration,
            segments=transcript.public_segments(),
            engine=engine.name,
            model=engine.model,
        )

    def _failed(self, exc: ChatServerError) -> FailedJob:
        return FailedJob(
            **self._run_fields(),
            **self._finished_fields(),
            error=JobError(type=exc.error_type, message=exc.message),
        )


class _Heartbeat:
    """Rewrites the processing document every ``interval`` seconds while the engine runs.

    A thread rather than the engine's progress callback: the callback comes once per segment,
    and decoding or one slow segment can take longer than the interval.
    """

    def __init__(self, job: _Job, interval: float) -> None:
        self.job = job
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.job_id[:40]}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # Joined before the final write, so the two never race on the job's last-seen ETag.
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.job._write(self.job._processing()):
                    self.job.stopped.set()
                    return
            except Exception as exc:
                # A missed heartbeat only makes the progress older; the final write surfaces
                # S3 trouble that lasts.
                logger.warning("%s: progress not written: %s", self.job.where, exc)


def _status(doc: JobResult | None) -> str:
    return doc.status if doc is not None else "absent"
