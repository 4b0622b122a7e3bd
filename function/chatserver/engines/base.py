"""The one interface every engine implements; nothing outside engines/ imports an engine."""

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

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


class LanguageGuess(BaseModel):
    code: str
    probability: float


class Engine(Protocol):
    name: str
    model: str
    multilingual: bool

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
