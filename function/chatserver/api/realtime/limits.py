"""What bounds a live session beside admission: how fast its audio may arrive, how many are open."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from .errors import TooManySessions


class AudioPace:
    """Audio may arrive ``speed`` times faster than real time, after a head start of ``burst_s``.

    A token bucket in seconds of audio: each append spends its duration, time refills it at
    ``speed`` up to ``burst_s``. ``wait`` sleeps while the bucket is in debt; the session reads
    no message meanwhile, so the socket's buffers fill and TCP slows the client down: audio is
    never dropped. One append may overdraw it by its own length, so a wait is at most
    ``max_append_s / speed``.
    """

    def __init__(self, speed: float, burst_s: float) -> None:
        self.speed = speed
        self.burst_s = burst_s
        self._tokens = burst_s
        self._at = time.monotonic()
        self.waited_s = 0.0

    def spend(self, audio_s: float) -> None:
        self._refill()
        self._tokens -= audio_s

    def delay(self) -> float:
        self._refill()
        return max(0.0, -self._tokens / self.speed)

    async def wait(self) -> None:
        delay = self.delay()
        if delay > 0:
            self.waited_s += delay
            await anyio.sleep(delay)

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst_s, self._tokens + (now - self._at) * self.speed)
        self._at = now


class SessionCount:
    """The live sessions open in this process; past ``limit``, ``TooManySessions``."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.open = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.open >= self.limit:
            raise TooManySessions(self.limit, self.retry_after_s)
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1
