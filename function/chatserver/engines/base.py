"""The one interface every engine implements; nothing outside engines/ imports an engine."""

from collections.abc import Callable
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from ..transcript import Transcript

ProgressCallback = Callable[[float], None]


class TranscribeOptions(BaseModel):
    language: str | None = None  # ISO code; None detects it
    beam_size: int = 5
    vad_filter: bool = False


class Engine(Protocol):
    name: str
    model: str
    multilingual: bool

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 samples; ``progress`` gets fractions in [0, 1]."""
        ...
