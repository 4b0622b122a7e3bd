"""The chunk worker: one chunk message in, one part result out; the worker that writes the last part merges.

Delivery is at least once, and chunks of one job run on different machines at once, so:

- A part is written with ``If-None-Match: *``: a duplicate message finds its part and does no
  transcription, and two deliveries that run together leave one part.
- After writing (or finding) its part, a worker lists the parts. S3 is strongly consistent for
  list-after-write: a PutObject that has returned is in every later listing. The worker whose
  PutObject returned last lists after every other part's PutObject returned, so it sees all of
  them and merges; a merge is never missed. Workers that finish together may both see all parts
  and both merge: the result write follows the single-pass runner's conditional-write rules
  (record.py), so the second finds the first's completed result and drops its own: one result.
- Before transcribing and again before writing, the worker checks that the upload is still the
  version it was cut from; a replaced upload's chunks stop and delete their own work objects.
- A chunk that fails for good makes the job ``failed`` with the chunk's time range; a transient
  failure raises, SQS redelivers, and on the last delivery (``chunk_max_receives``) the job's
  ``processing`` document names the chunk as stuck before the message goes to the dead-letter queue.
- The merged result's work objects (chunks, parts, plan) are deleted, under the work prefix only.
"""

import logging
from pathlib import Path

from ..core.errors import ChatServerError
from ..speech.audio import save_stream, temporary_audio_path
from .documents import JobError, ProcessingJob, StuckChunk
from .fanout import ChunkMessage, ChunkPlan, delete_work, part_key, plan_key
from .parts import PartResult, merge
from .record import JobRecord
from .runner import JobRunner, transcribe_options
from .s3 import get_object, head_object, put_object_if

logger = logging.getLogger(__name__)

# A chunk's audio is the chunk's length; the margin covers FLAC's last frame.
_CHUNK_MARGIN_S = 5.0


class _Gone(Exception):
    """The job finished, failed or was replaced: this chunk's work is moot."""


class ChunkWorker:
    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    def handle(self, message: ChunkMessage, receive_count: int = 1) -> None:
        """Transcribe one chunk and merge if it is the last; raises only where a retry may succeed."""
        _Chunk(self.runner, message).run(receive_count)


class _Chunk:
    """One delivery of one chunk message.

    The job's document is written through a ``JobRecord`` resumed from the message, so a
    fanned-out job follows exactly the single-pass runner's conditional-write rules, not a copy.
    """

    def __init__(self, runner: JobRunner, message: ChunkMessage) -> None:
        self.context = runner.context
        self.s3 = runner.s3
        self.settings = runner.context.settings
        self.message = message
        self.job = JobRecord.resume(
            runner.context,
            message.source,
            message.options,
            message.created_at,
            message.started_at,
            message.count,
            message.status_url,
        )
        self.job.where = f"{self.job.where} {message.span}"
        self.where = self.job.where

    def run(self, receive_count: int) -> None:
        try:
            if self._exists(self.message.part_key):
                logger.info("%s: part already written; duplicate message, nothing transcribed", self.where)
            else:
                self._check_current()
                self._transcribe_chunk(receive_count)
            self._after_part()
        except _Gone as reason:
            logger.info("%s: stopped, %s", self.where, reason)

    # --- one chunk ---------------------------------------------------------------------------
    def _check_current(self) -> None:
        if not self.job.source_is_current():
            # Nothing of this version can finish any more: its work objects go now, not in days.
            removed = delete_work(self.s3, self.settings, self.message.bucket, self.message.work)
            raise _Gone(
                f"the upload was replaced or deleted; {removed} work objects of its old version removed"
            )
        if self.job.is_finished(stored := self.job.read()):
            raise _Gone(f"the job is already {stored.status}")

    def _transcribe_chunk(self, receive_count: int) -> None:
        message = self.message
        service = self.context.service
        # The job's options in every chunk, in the job's language; the prompt in chunk 1 only.
        options = message.options.model_copy(update={"language": message.language})
        try:
            with temporary_audio_path(self.settings.tmp_dir) as path:
                self._download(path)
                transcript = service.transcribe(
                    path,
                    transcribe_options(service, options, first=message.index == 0),
                    max_seconds=message.end - message.start + _CHUNK_MARGIN_S,
                )
        except _Gone:
            raise
        except ChatServerError as exc:
            if not exc.transient:
                self._fail(exc)
                raise _Gone(f"failed for good: {exc.error_type}") from exc
            self._mark_stuck_on_last_delivery(receive_count, exc)
            raise
        except Exception as exc:
            self._mark_stuck_on_last_delivery(receive_count, exc)
            raise
        part = PartResult.of_chunk(message.index, message.start, message.end, transcript)
        # Old chunks stop writing: a part of a replaced upload would only be garbage.
        self._check_current()
        if self._put_once(message.part_key, part.model_dump_json().encode()):
            logger.info("%s: part written (%d segments)", self.where, len(part.segments))
        else:
            logger.info("%s: another delivery wrote this part first; ours dropped", self.where)

    def _download(self, path: Path) -> None:
        response = get_object(self.s3, self.message.bucket, self.message.chunk_key)
        if response is None:
            raise _Gone("the chunk's audio is gone: the job finished or was replaced")
        body = response["Body"]
        try:
            save_stream(body, path)
        finally:
            body.close()

    def _put_once(self, key: str, body: bytes) -> bool:
        etag = put_object_if(
            self.s3, self.message.bucket, key, body, replaces=None, ContentType="application/json"
        )
        return etag is not None

    def _exists(self, key: str) -> bool:
        return head_object(self.s3, self.message.bucket, key) is not None

    # --- the job -----------------------------------------------------------------------------
    def _after_part(self) -> None:
        parts = self._part_keys()
        if len(parts) < self.message.count:
            self._write_progress(parts)
        else:
            self._merge(parts)

    def _part_keys(self) -> list[str]:
        prefix = f"{self.message.work}parts/"
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.message.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def _read_json(self, key: str) -> bytes:
        response = get_object(self.s3, self.message.bucket, key)
        if response is None:
            raise _Gone(f"{key} is gone: another worker merged or the upload was replaced")
        return response["Body"].read()

    def _stored_processing(self) -> ProcessingJob | None:
        stored = self.job.read()
        if not isinstance(stored, ProcessingJob) or not self.job.same_upload(stored):
            return None
        self.job.progress = stored.progress
        self.job.stuck = stored.stuck
        return stored

    def _write_progress(self, parts: list[str]) -> None:
        plan = ChunkPlan.model_validate_json(self._read_json(plan_key(self.message.work)))
        done_keys = set(parts)
        done = sum(c.end - c.start for c in plan.chunks if part_key(self.message.work, c.index) in done_keys)
        fraction = min(done / plan.duration, 1.0) if plan.duration else 0.0
        current = self._stored_processing()
        if current is None or current.progress >= fraction:
            return  # finished, replaced, or another worker wrote as much already
        self.job.progress = fraction
        self.job.write(self.job.processing())
        logger.info(
            "%s: job progress %.0f%% (%d/%d parts)", self.where, 100 * fraction, len(parts), len(plan.chunks)
        )

    def _merge(self, parts: list[str]) -> None:
        if self.job.is_finished(stored := self.job.read()):
            logger.info("%s: the job is already %s; no merge", self.where, stored.status)
            return
        results = [PartResult.model_validate_json(self._read_json(key)) for key in parts]
        transcript = merge(results, self.message.language, self.message.duration)
        if self.job.finish(self.job.completed(transcript)):
            logger.info(
                "%s: merged %d parts into the result",
                self.where,
                len(results),
                extra={"merged_parts": len(results)},
            )
            removed = delete_work(self.s3, self.settings, self.message.bucket, self.message.work)
            logger.info("%s: %d work objects removed", self.where, removed)

    def _fail(self, exc: ChatServerError) -> None:
        self.job.read()
        failed = self.job.failed(JobError(type=exc.error_type, message=f"{self.message.span}: {exc.message}"))
        if self.job.finish(failed):
            delete_work(self.s3, self.settings, self.message.bucket, self.message.work)

    def _mark_stuck_on_last_delivery(self, receive_count: int, exc: Exception) -> None:
        if receive_count < self.settings.chunk_max_receives:
            return
        message = self.message
        try:
            current = self._stored_processing()
            if current is None or any(s.index == message.index for s in current.stuck):
                return
            self.job.stuck = [
                *current.stuck,
                StuckChunk(index=message.index, start=message.start, end=message.end, error=str(exc)[:300]),
            ]
            self.job.write(self.job.processing())
            logger.error(
                "%s: delivery %d of %d failed; the chunk goes to the dead-letter queue and the job says so",
                self.where,
                receive_count,
                self.settings.chunk_max_receives,
            )
        except Exception as marking:
            # The original error is what SQS must see; this one only makes the document older.
            logger.warning("%s: could not mark the chunk stuck: %s", self.where, marking)
