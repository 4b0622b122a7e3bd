"""What every piece of a transcription checks between segments: its engine seconds, and whether
it was stopped."""

import threading
import time

from ..core.errors import ComputeBudgetExceeded


class Budget:
    """What every piece checks between segments: the engine seconds left to the transcription
    (past them, ``ComputeBudgetExceeded``) and whether the transcription was stopped."""

    def __init__(self, seconds: float, audio_s: float) -> None:
        self.seconds = seconds
        self.audio_s = audio_s
        self.deadline = time.perf_counter() + seconds
        self.stopped = threading.Event()

    def check(self) -> None:
        if time.perf_counter() > self.deadline:
            raise ComputeBudgetExceeded(self.seconds, self.audio_s)
        if self.stopped.is_set():
            raise Stopped()


class Stopped(Exception):
    """Another piece failed or the caller stopped: this piece's result is not wanted."""
