"""The one interface every engine implements; nothing outside engines/ imports an engine."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from ..segmentation import SpeechDetection
from ..transcript import DecodedSegment, Transcript

ProgressCallback = Callable[[float], None]
# Called with each segment as soon as it is decoded (streaming, progress, cancellation): an
# exception raised by the callback stops the decoding and propagates to the caller.
SegmentCallback = Callable[[DecodedSegment], None]


class Task(StrEnum):
    transcribe = "transcribe"
    translate = "translate"  # into English


class TranscribeOptions(BaseModel):
    language: str | None = None  # ISO code; None detects it
    task: Task = Task.transcribe
    beam_size: int = 5
    vad_filter: bool = False
    prompt: str | None = Field(default=None, description="Text that conditions the first window.")
    # None: Whisper's fallback schedule (0.0, 0.2, ... 1.0); a number: that one temperature.
    temperature: float | None = None
    word_timestamps: bool = False
    # Where the service cuts the recording at its silences (not an engine option: engines never
    # read it); None: the service's own, measured defaults.
    detection: SpeechDetection | None = None
    # The audio is one run of speech (service.py): an engine may decode it as one segment,
    # without Whisper's timestamp tokens (faster-whisper does in its sized window).
    one_segment: bool = False
    # The audio is a whole voice note (service.py), not a run of a longer recording: only a
    # note's window goes under what the decoder sees (WindowRule).
    note: bool = False


FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window, in 10 ms frames
MIN_WINDOW_FRAMES = 300  # the shortest window CTranslate2's Whisper encoder accepts


@dataclass(frozen=True)
class WindowRule:
    """Encoder window for a piece: ``min(30 s, max(min_s, piece + margin_s))``; off: always 30 s.

    The decoder sees at least ``decoder_min_s``: a silent window's encoding follows the piece's
    (sized_window.py).
    """

    enabled: bool = True
    min_s: float = 5.0  # core/settings.py window_min_s says why
    margin_s: float = 3.0
    decoder_min_s: float = 15.0

    @property
    def decoder_frames(self) -> int:
        return min(FULL_WINDOW_FRAMES, round(self.decoder_min_s * 100))

    @property
    def silent_tail(self) -> bool:
        """Whether a window can be shorter than what the decoder is to see."""
        return self.enabled and max(MIN_WINDOW_FRAMES, round(self.min_s * 100)) < self.decoder_frames

    def frames(self, samples: int, note: bool = True) -> int:
        """A voice note's window may be as short as ``min_s``; a run of a longer recording's no
        shorter than what the decoder sees (run by run, a 5 s floor lost French words, README)."""
        if not self.enabled:
            return FULL_WINDOW_FRAMES
        wanted = math.ceil((samples / 16_000 + self.margin_s) * 100)
        floor = round(self.min_s * 100) if note else max(round(self.min_s * 100), self.decoder_frames)
        return min(FULL_WINDOW_FRAMES, max(MIN_WINDOW_FRAMES, floor, wanted))


class LanguageGuess(BaseModel):
    code: str
    probability: float


class Engine(Protocol):
    name: str
    model: str
    multilingual: bool
    workers: int  # calls that can run at once (the rest wait for one to finish)

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 samples; ``progress`` gets fractions in [0, 1]."""
        ...

    def detect_language(self, audio: np.ndarray) -> list[LanguageGuess]:
        """Language probabilities from the first 30 s, most likely first."""
        ...

    def warm_up(self) -> None:
        """Run once at load what the first request would otherwise pay for (issue 9.4)."""
        ...
