"""One job's result document and the rules for writing it, shared by the runner and the chunk worker.

Delivery is at least once, and a job's document may be written by several deliveries at once,
on several machines (the runner, its retries, the chunk workers of a fanned-out upload):

- An upload version is its ETag plus its requested options (metadata.py), including any it
  refused. A completed or failed result for the same version means the work is done.
- Every write is a whole-document PutObject made conditional on the result ETag this delivery
  last saw (``If-None-Match: *`` when there was none). A write that loses re-reads and decides:
  a finished result for the same version wins over this delivery's work; a completed result
  wins over another delivery's progress; a result for another version is replaced only while
  this delivery's upload is still the current object.
- The final write checks first that the upload is still the version this delivery worked on,
  so a delivery for a replaced upload never writes over the newer upload's result.
- With a ``callback_url``, the writer of the final result calls it back once that write has
  succeeded (callback.py), then records the delivery with one more write conditional on the
  result it wrote: if anything replaced that result meanwhile, the record is dropped, never
  the newer document.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from ..core.settings import Settings
from ..speech.service import TranscriptionService
from ..speech.transcript import Transcript
from .callback import CallbackSender
from .documents import (
    CallbackDelivery,
    CompletedJob,
    FailedJob,
    JobError,
    JobOptions,
    JobResult,
    JobSegment,
    ProcessingJob,
    RunResult,
    Source,
    StuckChunk,
    TerminalResult,
    utc_now,
)
from .errors import InvalidMetadata
from .metadata import read_metadata
from .s3 import S3Client, bare_etag, head_object
from .store import ResultStore, WriteConflict, result_key

logger = logging.getLogger(__name__)

# Conditional writes that keep losing mean other deliveries are writing too; past this, raise
# and let the event be retried rather than spin.
_MAX_WRITE_ATTEMPTS = 5


@dataclass(frozen=True)
class JobContext:
    """What every delivery of a job works with, whichever machine runs it."""

    settings: Settings
    service: TranscriptionService
    s3: S3Client
    results: ResultStore
    callbacks: CallbackSender


@dataclass(frozen=True)
class UploadHead:
    """The upload as it is now: its version, size, requested options and upload time.

    ``refused`` says which metadata values could not be read (the job fails with it);
    ``status_url`` is what POST /jobs stored for the callback's body.
    """

    etag: str
    size: int
    options: JobOptions
    last_modified: datetime
    refused: str | None = None
    status_url: str | None = None


class Superseded(Exception):
    """A newer upload, or another delivery's finished result, made this delivery's work moot."""


class _Decision(Enum):
    REPLACE = "replace"  # write ours over what is there
    SKIP = "skip"  # leave what is there, carry on (another delivery's progress)
    STOP = "stop"  # leave what is there, stop working


class JobRecord:
    """One delivery's view of one job: what it knows of the upload and of the stored document.

    ``source``, ``options``, ``created_at`` and ``started_at`` are set once the upload has been
    looked at (``begin``) or come from a chunk message (``resume``). Not shared between threads,
    except with its heartbeat (heartbeat.py), which is stopped before the final write.
    """

    def __init__(self, context: JobContext, bucket: str, key: str) -> None:
        self.context = context
        self.bucket = bucket
        self.key = key
        self.job_id = key[len(context.settings.upload_prefix) :]
        self.result_key = result_key(context.settings, key)
        self.where = f"job {self.job_id!r} (s3://{bucket}/{key})"
        self.seen: str | None = None  # ETag of the result document as last read or written
        self.progress = 0.0
        self.chunks = 1
        self.stuck: list[StuckChunk] = []
        self.stopped = threading.Event()  # set when another writer made this delivery moot
        self.refused: str | None = None
        self.status_url = f"s3://{bucket}/{self.result_key}"
        self.source: Source
        self.options: JobOptions
        self.created_at: datetime
        self.started_at: datetime
        self.clock = time.perf_counter()

    def begin(self, head: UploadHead) -> None:
        """This delivery works on the upload version ``head`` describes, from now."""
        self.source = Source(bucket=self.bucket, key=self.key, etag=head.etag, size=head.size)
        self.options = head.options
        self.refused = head.refused
        self.status_url = head.status_url or self.status_url
        self.created_at = head.last_modified
        self.started_at = utc_now()
        self.clock = time.perf_counter()

    @classmethod
    def resume(
        cls,
        context: JobContext,
        source: Source,
        options: JobOptions,
        created_at: datetime,
        started_at: datetime,
        chunks: int,
        status_url: str | None = None,
    ) -> "JobRecord":
        """The job of a fanned-out upload, as a chunk worker continues it on another machine."""
        job = cls(context, source.bucket, source.key)
        job.source = source
        job.options = options
        job.status_url = status_url or job.status_url
        job.created_at = created_at
        job.started_at = started_at
        job.chunks = chunks
        # processing_seconds counts from the runner's start, not from this worker's.
        job.clock = time.perf_counter() - (utc_now() - started_at).total_seconds()
        return job

    # --- the upload ----------------------------------------------------------------------------
    def head(self) -> UploadHead | None:
        """The upload as it is now; None when it is gone."""
        response = head_object(self.context.s3, self.bucket, self.key)
        if response is None:
            return None
        read = read_metadata(response.get("Metadata", {}), self.context.settings)
        return UploadHead(
            bare_etag(response["ETag"]),
            response["ContentLength"],
            read.options,
            response["LastModified"],
            read.refused,
            read.status_url,
        )

    def same_upload(self, doc: RunResult) -> bool:
        return (
            doc.source.etag == self.source.etag
            and doc.options == self.options
            and _refused(doc) == self.refused
        )

    def source_is_current(self) -> bool:
        head = self.head()
        return (
            head is not None
            and head.etag == self.source.etag
            and head.options == self.options
            and head.refused == self.refused
        )

    # --- the document --------------------------------------------------------------------------
    def read(self) -> JobResult | None:
        """The stored document (None: absent or not ours); later writes are conditional on it."""
        stored = self.context.results.read(self.bucket, self.result_key)
        self.seen = stored.etag
        return stored.doc

    def is_finished(self, doc: JobResult | None) -> bool:
        """Whether ``doc`` is a completed or failed result of this delivery's upload version."""
        return isinstance(doc, TerminalResult) and self.same_upload(doc)

    def write(self, doc: RunResult) -> bool:
        """Write ``doc`` unless another writer should win; False means stop working."""
        for _ in range(_MAX_WRITE_ATTEMPTS):
            try:
                self.seen = self.context.results.write(self.bucket, self.result_key, doc, replaces=self.seen)
                return True
            except WriteConflict:
                current = self.read()
                decision = self._after_conflict(current, doc)
                logger.info(
                    "%s: result changed under us (%s), %s", self.where, _status(current), decision.value
                )
                if decision is _Decision.STOP:
                    return False
                if decision is _Decision.SKIP:
                    return True
        raise RuntimeError(f"{self.where}: the result kept changing under concurrent writers")

    def finish(self, doc: TerminalResult) -> bool:
        """Write the final result under the rules above; True if this delivery's was written."""
        if not self.source_is_current():
            logger.info(
                "%s: the upload was replaced meanwhile; %s result not written", self.where, doc.status
            )
            return False
        if self.write(doc):
            logger.info(
                "%s: %s in %.2f s, result at s3://%s/%s",
                self.where,
                doc.status,
                doc.processing_seconds,
                self.bucket,
                self.result_key,
            )
            self._call_back(doc)
            return True
        logger.info("%s: another delivery wrote the result first; ours dropped", self.where)
        return False

    def _call_back(self, doc: TerminalResult) -> None:
        """Deliver the callback, then record how it went over the result just written."""
        if not self.options.callback_url or doc.callback is None:
            return
        error = doc.error if isinstance(doc, FailedJob) else None
        delivery = self.context.callbacks.deliver(
            self.options.callback_url, self.job_id, doc.status, self.status_url, error
        )
        recorded = doc.model_copy(update={"callback": delivery, "updated_at": utc_now()})
        try:
            self.seen = self.context.results.write(self.bucket, self.result_key, recorded, replaces=self.seen)
        except WriteConflict:
            logger.info("%s: the result changed during the callback; delivery not recorded", self.where)
        except Exception as exc:
            # The result itself is written: a lost delivery record must not make Lambda retry.
            logger.warning("%s: callback delivery not recorded: %s", self.where, exc)

    def _after_conflict(self, current: JobResult | None, ours: RunResult) -> _Decision:
        if not isinstance(current, RunResult):
            return _Decision.REPLACE  # nothing, a pending marker, or not a result of ours
        if self.same_upload(current):
            if isinstance(current, TerminalResult):
                return _Decision.STOP
            return _Decision.REPLACE if isinstance(ours, TerminalResult) else _Decision.SKIP
        return _Decision.REPLACE if self.source_is_current() else _Decision.STOP

    # --- the documents this delivery writes --------------------------------------------------
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
        return {
            "finished_at": utc_now(),
            "processing_seconds": round(time.perf_counter() - self.clock, 3),
            # Attempts 0: the callback is on its way (finish delivers it and records how it went).
            "callback": CallbackDelivery() if self.options.callback_url else None,
        }

    def processing(self) -> ProcessingJob:
        return ProcessingJob(**self._run_fields(), progress=round(self.progress, 4), stuck=self.stuck)

    def completed(self, transcript: Transcript) -> CompletedJob:
        engine = self.context.service.engine
        return CompletedJob(
            **self._run_fields(),
            **self._finished_fields(),
            text=transcript.text,
            language=transcript.language,
            duration=transcript.duration,
            segments=[JobSegment.of(s, self.options.word_timestamps) for s in transcript.segments],
            engine=engine.name,
            model=engine.model,
        )

    def failed(self, error: JobError) -> FailedJob:
        return FailedJob(**self._run_fields(), **self._finished_fields(), error=error)


def _refused(doc: RunResult) -> str | None:
    """The metadata refusal a failed result was written for; None for any other result."""
    if isinstance(doc, FailedJob) and doc.error.type == InvalidMetadata.error_type:
        return doc.error.message
    return None


def _status(doc: JobResult | None) -> str:
    return doc.status if doc is not None else "absent"
