"""A live session's decodes: through the one service, in a worker thread, under admission.

A final decode is what POST /transcribe does with the same audio and options (it waits in the
line like any request, and gets ``Busy`` when the line is full). A provisional decode is
greedy (beam 1) and optional: it takes a slot only if one is free at that moment, so it never
delays a waiting request by more than itself. Either stops at its next segment once its
session closes or (provisional) once its turn ends.
"""

import functools
import threading
import time
from dataclasses import dataclass

import anyio
import numpy as np

from ...speech.audio import SAMPLE_RATE
from ...speech.engines import TranscribeOptions
from ...speech.service import TranscriptionService
from ...speech.transcript import DecodedSegment, Transcript
from ..slots import Slots


class Stopped(Exception):
    """The decode's session closed, or its turn ended: its result is not wanted."""


@dataclass
class Turn:
    """A committed turn waiting for its final decode."""

    item_id: str
    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return self.samples.size / SAMPLE_RATE


class Decodes:
    def __init__(self, service: TranscriptionService, slots: Slots) -> None:
        self.service = service
        self.slots = slots
        self.closed = threading.Event()  # set when the session ends: every decode stops
        self.engine_s = 0.0  # wall time of this session's decodes, for its log line
        self.audio_s = 0.0

    async def run(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        *,
        wait: bool,
        stop: threading.Event | None = None,
    ) -> Transcript:
        """Raises ``Busy`` (no slot), ``Stopped``, or what the service raises."""

        def checked(segment: DecodedSegment) -> None:
            if self.closed.is_set() or (stop is not None and stop.is_set()):
                raise Stopped()

        if self.closed.is_set():
            raise Stopped()
        async with self.slots.hold(wait=wait):
            started = time.perf_counter()
            try:
                # Not abandoned on cancel: the slot is held until the thread returns, which
                # ``checked`` makes it do at the next segment.
                return await anyio.to_thread.run_sync(
                    functools.partial(self.service.transcribe_samples, samples, options, on_segment=checked)
                )
            finally:
                self.engine_s += time.perf_counter() - started
                self.audio_s += samples.size / SAMPLE_RATE


def provisional_words(text: str, sent: int) -> list[str]:
    """The words of a provisional decode past the ``sent`` first ones, without its last word,
    which the audio may have cut in the middle.

    Deltas only ever add words: where a later decode changes a word that was already sent, the
    change waits for the turn's final text, and the new words go on from the count sent.
    Languages written without spaces get their provisional text only at the end of a pause.
    """
    words = text.split()[:-1]
    return words[sent:]
