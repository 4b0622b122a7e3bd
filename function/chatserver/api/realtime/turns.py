"""The uncommitted audio of a session, and server VAD's turns on it.

Positions are in samples at 16 kHz on the session's timeline (everything appended since the
session began, resampled); OpenAI's ``audio_start_ms`` and ``audio_end_ms`` are these in ms.
"""

from dataclasses import dataclass

import numpy as np

from ...speech.audio import SAMPLE_RATE
from .config import ServerVad

FRAME = 512  # Silero's frame at 16 kHz: 32 ms


def to_ms(position: int) -> int:
    return round(position * 1000 / SAMPLE_RATE)


class InputBuffer:
    """Audio from ``start`` to ``end`` of the timeline that no commit has taken yet."""

    def __init__(self) -> None:
        self.start = 0
        self.end = 0
        self._chunks: list[np.ndarray] = []

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size

    def samples(self, start: int | None = None) -> np.ndarray:
        """A copy of the buffer from ``start`` (the buffer's own start by default) to its end."""
        whole = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        self._chunks = [whole] if whole.size else []
        begin = max(0, (start if start is not None else self.start) - self.start)
        return whole[begin:].copy()

    def take(self, until: int) -> np.ndarray:
        """The samples up to ``until``, which the buffer then no longer holds."""
        whole = self.samples()
        cut = max(0, min(until, self.end) - self.start)
        self.drop_before(self.start + cut)
        return whole[:cut]

    def drop_before(self, position: int) -> None:
        """Forget what lies before ``position`` (the audio before a turn's prefix padding)."""
        if position <= self.start:
            return
        whole = self.samples()
        cut = min(position, self.end) - self.start
        self._chunks = [whole[cut:]] if whole.size > cut else []
        self.start += cut

    def clear(self) -> None:
        self.drop_before(self.end)


@dataclass(frozen=True)
class SpeechStart:
    position: int  # where the first frame of speech begins


@dataclass(frozen=True)
class SpeechEnd:
    position: int  # where the speech ended (the silence began)
    commit_at: int  # where the silence reached silence_duration_ms: the turn ends here


class TurnDetector:
    """OpenAI's server VAD on Silero's frame probabilities: speech starts at a frame at or over
    ``threshold`` and ends once frames under ``threshold - 0.15`` (faster-whisper's
    hysteresis) have lasted ``silence_duration_ms``; frames in between continue the state."""

    def __init__(self, vad: ServerVad, origin: int) -> None:
        self.vad = vad
        self._next = origin  # where the next frame begins
        self.speaking = False
        self._silence_from: int | None = None
        self._low = max(vad.threshold - 0.15, 0.01)
        self._silence = round(vad.silence_duration_ms * SAMPLE_RATE / 1000)

    def frames(self, probabilities: np.ndarray) -> list[SpeechStart | SpeechEnd]:
        found: list[SpeechStart | SpeechEnd] = []
        for probability in probabilities:
            at, self._next = self._next, self._next + FRAME
            if not self.speaking:
                if probability >= self.vad.threshold:
                    self.speaking = True
                    self._silence_from = None
                    found.append(SpeechStart(at))
            elif probability >= self.vad.threshold:
                self._silence_from = None
            elif probability < self._low:
                if self._silence_from is None:
                    self._silence_from = at
                if self._next - self._silence_from >= self._silence:
                    self.speaking = False
                    found.append(SpeechEnd(self._silence_from, self._next))
                    self._silence_from = None
        return found

    def restart(self, at: int) -> None:
        """Speech goes on past a turn the server cut (its length limit): a new turn from ``at``."""
        self._silence_from = None if self._silence_from is None else max(self._silence_from, at)
