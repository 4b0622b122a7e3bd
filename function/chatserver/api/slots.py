"""Admission control: a fixed number of transcriptions at once and a short, bounded line."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ..core.errors import Busy


class Slots:
    """Beyond ``capacity`` running plus ``queue`` waiting, callers get ``Busy`` at once."""

    def __init__(self, capacity: int, queue: int) -> None:
        self.capacity = capacity
        self._limit = capacity + queue
        self._admitted = 0
        self._running = anyio.Semaphore(capacity)

    @property
    def admitted(self) -> int:
        return self._admitted

    @asynccontextmanager
    async def hold(self, wait: bool = True) -> AsyncIterator[None]:
        """A slot; ``wait=False`` takes one only if it is free now (else ``Busy``), so that
        optional work (live dictation's provisional decodes) never waits in the line."""
        if self._admitted >= self._limit or (not wait and self._running.value == 0):
            raise Busy(self.capacity)
        self._admitted += 1
        try:
            async with self._running:
                yield
        finally:
            self._admitted -= 1
