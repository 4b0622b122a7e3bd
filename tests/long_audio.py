"""Long recordings for the fan-out tests and benchmark, built inside the run from ../shared/audio.

Nothing generated is committed: clips are decoded with the service's own FFmpeg, joined with
short silences between them (as pauses between speakers), and written as FLAC.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatserver.speech.audio import SAMPLE_RATE, decode, ffmpeg_executable, write_flac
from speech import MANIFEST, Clip

FFMPEG = ffmpeg_executable(None)


@dataclass(frozen=True)
class Recording:
    path: Path
    duration: float
    reference: str
    language: str


def clips_of(language: str) -> list[Clip]:
    return [c for c in MANIFEST if c.language == language]


def join(clips: Sequence[Clip], target: Path, *, gap_s: float = 0.8, min_seconds: float = 0.0) -> Recording:
    """``clips`` end to end, ``gap_s`` of silence apart, repeated in order until ``min_seconds``."""
    gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.float32)
    decoded = [decode(c.path, ffmpeg=FFMPEG, timeout_s=60, max_seconds=3600) for c in clips]
    pieces: list[np.ndarray] = []
    references: list[str] = []
    total = 0
    while not pieces or total < min_seconds * SAMPLE_RATE:
        for clip, samples in zip(clips, decoded, strict=True):
            pieces += [samples, gap]
            references.append(clip.reference)
            total += samples.size + gap.size
    joined = np.concatenate(pieces)
    write_flac(joined, target, ffmpeg=FFMPEG, timeout_s=120)
    languages = {c.language for c in clips}
    return Recording(target, joined.size / SAMPLE_RATE, " ".join(references), languages.pop())
