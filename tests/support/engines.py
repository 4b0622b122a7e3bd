"""Stand-ins for the engine: around the real one for tests that change one of its calls, and a
stub for tests that need to control timing."""

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chatserver.speech.audio import SAMPLE_RATE
from chatserver.speech.engines import Engine, LanguageGuess, TranscribeOptions
from chatserver.speech.engines.base import ProgressCallback, SegmentCallback
from chatserver.speech.transcript import DecodedSegment, Transcript


class EngineWrapper:
    """The real engine, except for the methods a subclass defines: every other attribute is the
    engine's own, so an attribute added to the Engine protocol needs no change here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


class StubEngine:
    """A stand-in engine, for tests that need to control timing: decoding before it stays real.

    Reports ``steps`` as progress, ``delay_s`` apart, and calls ``hook(call_number, fraction)``
    before each report so a test can act while a transcription is under way.
    """

    name = "stub-engine"
    model = "stub-model"
    multilingual = True
    workers = 1

    def __init__(
        self,
        steps: Sequence[float] = (0.5, 1.0),
        delay_s: float = 0.0,
        hook: Callable[[int, float], None] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.steps = steps
        self.delay_s = delay_s
        self.hook = hook
        self.error = error
        self.calls = 0
        self._lock = threading.Lock()

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        with self._lock:
            self.calls += 1
            call = self.calls
        if self.error is not None:
            raise self.error
        for fraction in self.steps:
            time.sleep(self.delay_s)
            if self.hook is not None:
                self.hook(call, fraction)
            if progress is not None:
                progress(fraction)
        duration = round(audio.size / SAMPLE_RATE, 3)
        text = f"stub transcript {call}"
        segment = DecodedSegment(start=0.0, end=duration, text=text)
        # The service collects segments through the callback, as every engine reports them.
        if on_segment is not None:
            on_segment(segment)
        return Transcript(text=text, language=options.language or "en", duration=duration, segments=[segment])

    def detect_language(self, audio: np.ndarray) -> list[LanguageGuess]:
        return [LanguageGuess(code="en", probability=1.0)]
