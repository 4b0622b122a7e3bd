"""The progress of a job transcribed in one pass, rewritten while the engine runs."""

import logging
import threading

from .record import JobRecord

logger = logging.getLogger(__name__)


class Heartbeat:
    """Rewrites the processing document every ``interval`` seconds while the engine runs.

    A thread rather than the engine's progress callback: the callback comes once per segment,
    and decoding or one slow segment can take longer than the interval. Another writer's
    finished result sets ``job.stopped``.
    """

    def __init__(self, job: JobRecord, interval: float) -> None:
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
                if not self.job.write(self.job.processing()):
                    self.job.stopped.set()
                    return
            except Exception as exc:
                # A missed heartbeat only makes the progress older; the final write surfaces
                # S3 trouble that lasts.
                logger.warning("%s: progress not written: %s", self.job.where, exc)
