"""The S3 job runner: one uploaded object in, one JSON result document out.

Delivery is at least once, so the runner is written to be run any number of times, at once or
late, for the same or an older upload (the document's rules are in record.py):

- A completed or failed result for the same upload version means the work is done: a
  duplicate reads one small document and stops.
- The source is read with ``If-Match: <event ETag>``, so a delivery for a replaced upload
  transcribes nothing.
- Permanent errors (undecodable, too large, too long, bad language, metadata options that cannot
  be read) become a ``failed`` result and the runner returns. Anything else raises, so Lambda
  retries and then dead-letters the event; the ``processing`` document left behind is replaced
  by the retry.
- The runner only ever reads the upload: it never writes, copies or deletes under the upload prefix.
- With a chunk queue configured, an upload longer than ``fanout_min_seconds`` is cut into
  chunks and fanned out (fanout.py); chunk_worker.py finishes the job under the same rules.
- The writer of the final result calls the job's ``callback_url`` back (record.py, callback.py).
"""

import logging
from pathlib import Path

import numpy as np

from ..core.errors import ChatServerError
from ..core.settings import Settings
from ..speech.audio import save_stream, temporary_audio_path
from ..speech.engines import TranscribeOptions
from ..speech.options import request_options
from ..speech.service import TranscriptionService
from ..speech.transcript import Transcript
from .callback import CallbackSender
from .documents import JobError, JobOptions
from .errors import InvalidMetadata, ObjectTooLarge
from .fanout import FanOut
from .heartbeat import Heartbeat
from .record import JobContext, JobRecord, Superseded
from .s3 import ObjectCreated, S3Client, get_object, make_s3_client
from .store import ResultStore

logger = logging.getLogger(__name__)


class JobRunner:
    def __init__(
        self, service: TranscriptionService, settings: Settings, s3_client: S3Client | None = None
    ) -> None:
        s3 = s3_client if s3_client is not None else make_s3_client(settings)
        self.context = JobContext(settings, service, s3, ResultStore(s3), CallbackSender(settings))
        self.fanout = FanOut(settings, s3, service) if settings.chunk_queue_url else None

    @property
    def s3(self) -> S3Client:
        return self.context.s3

    def handle(self, upload: ObjectCreated) -> None:
        """Transcribe one uploaded object; raises only where a retry may succeed."""
        prefix = self.context.settings.upload_prefix
        if not upload.key.startswith(prefix) or upload.key.endswith("/"):
            # Folder markers and anything outside the watched prefix (our own results included).
            logger.info("ignoring s3://%s/%s: not an upload under %r", upload.bucket, upload.key, prefix)
            return
        _Delivery(self, upload).run()


class _Delivery:
    """One delivery of one upload, in one pass or fanned out."""

    def __init__(self, runner: JobRunner, upload: ObjectCreated) -> None:
        self.runner = runner
        self.settings = runner.context.settings
        self.upload = upload
        self.job = JobRecord(runner.context, upload.bucket, upload.key)
        self.where = self.job.where

    def run(self) -> None:
        job = self.job
        head = job.head()
        if head is None:
            logger.info("%s: the object is gone; nothing to transcribe", self.where)
            return
        if self.upload.etag and head.etag != self.upload.etag:
            logger.info(
                "%s: replaced by a newer upload (ETag %s, event had %s)",
                self.where,
                head.etag,
                self.upload.etag,
            )
            return
        job.begin(head)
        if job.is_finished(stored := job.read()):
            logger.info(
                "%s: already %s for ETag %s; duplicate event ignored", self.where, stored.status, head.etag
            )
            return
        if job.refused:
            logger.info("%s: failed for good, the upload's metadata: %s", self.where, job.refused)
            job.finish(job.failed(JobError(type=InvalidMetadata.error_type, message=job.refused)))
            return
        try:
            transcript = self._transcribe()
            if transcript is None:
                return  # fanned out: the chunk worker that writes the last part finishes the job
        except Superseded as reason:
            logger.info("%s: stopped, %s", self.where, reason)
            return
        except ChatServerError as exc:
            if exc.transient:
                logger.warning(
                    "%s: transient %s, raising for a retry: %s", self.where, exc.error_type, exc.message
                )
                raise
            logger.info("%s: failed for good, %s: %s", self.where, exc.error_type, exc.message)
            job.finish(job.failed(JobError(type=exc.error_type, message=exc.message)))
            return
        job.finish(job.completed(transcript))

    def _transcribe(self) -> Transcript | None:
        job, service = self.job, self.runner.context.service
        # Options and size are checked before anything is downloaded, so bad uploads fail cheaply.
        options = transcribe_options(service, job.options)
        if job.source.size > self.settings.max_job_upload_bytes:
            raise ObjectTooLarge(job.source.size, self.settings.max_job_upload_bytes)
        with temporary_audio_path(self.settings.tmp_dir) as path:
            self._download(path)
            if not job.write(job.processing()):
                raise Superseded("another delivery or a newer upload owns the result")
            samples = service.decode(path, self.settings.max_job_audio_seconds)
        if self._fanned_out(samples, options):
            return None
        heartbeat = Heartbeat(job, self.settings.progress_interval_s)
        try:
            transcript = service.transcribe_samples(samples, options, progress=self._on_progress)
        finally:
            heartbeat.stop()
        if job.stopped.is_set():
            raise Superseded("another delivery finished first or the upload was replaced")
        return transcript

    def _fanned_out(self, samples: np.ndarray, options: TranscribeOptions) -> bool:
        """Cut a long upload into chunks and queue them; False: transcribe it here in one pass."""
        fanout, job = self.runner.fanout, self.job
        if fanout is None or not fanout.wanted(samples):
            return False
        plan, work, split_s = fanout.plan(
            job.bucket, job.job_id, job.source, job.options, options.language, samples
        )
        job.chunks = len(plan.chunks)
        # Written before the messages go, so no worker's progress is overwritten by this 0.
        if not job.write(job.processing()):
            raise Superseded("another delivery or a newer upload owns the result")
        fanout.send(
            fanout.messages(job.bucket, job.key, plan, work, job.created_at, job.started_at, job.status_url)
        )
        logger.info(
            "%s: %.0f s of %s audio cut into %d chunks in %.2f s and queued, work at s3://%s/%s",
            self.where,
            plan.duration,
            plan.language,
            job.chunks,
            split_s,
            job.bucket,
            work,
            extra={"split_s": round(split_s, 3), "chunks": job.chunks},
        )
        return True

    def _download(self, path: Path) -> None:
        # If-Match pins the exact upload version the event announced.
        response = get_object(
            self.runner.s3, self.job.bucket, self.job.key, if_match=f'"{self.job.source.etag}"'
        )
        if response is None:
            raise Superseded("the upload was replaced or deleted before it was read")
        body = response["Body"]
        try:
            save_stream(body, path)  # 1 MiB at a time: memory stays flat whatever the size
        finally:
            body.close()

    def _on_progress(self, fraction: float) -> None:
        self.job.progress = max(self.job.progress, min(max(fraction, 0.0), 1.0))
        if self.job.stopped.is_set():
            # Raising inside the engine's loop is the only way to stop it early.
            raise Superseded("another delivery finished first or the upload was replaced")


def transcribe_options(
    service: TranscriptionService, options: JobOptions, *, first: bool = True
) -> TranscribeOptions:
    """A job's options checked as /transcribe checks a request's (a bad one: a failed result).

    ``first=False`` for the chunks after the first of a fanned-out job: the prompt conditions
    the first window of the recording only, as it does in one pass.
    """
    return request_options(
        service,
        options.language,
        task=options.task,
        prompt=options.prompt if first else None,
        word_timestamps=options.word_timestamps,
    )
