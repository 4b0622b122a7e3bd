"""Long recordings for the tests and the benchmark, built inside the run from ../shared/audio.

Nothing generated is committed: clips are decoded with the service's own FFmpeg, joined with
short silences between them (as pauses between speakers), and written as FLAC. One builder,
``join``, makes the fan-out tests' recordings and the benchmark's (bench/joined.py).
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatserver.speech.audio import SAMPLE_RATE, decode, ffmpeg_executable, write_flac
from tests.support.corpus import MANIFEST, Clip


@dataclass(frozen=True)
class Recording:
    path: Path
    duration: float
    reference: str
    language: str


@functools.cache
def _ffmpeg() -> str:
    return ffmpeg_executable(None)


def clips_of(language: str) -> list[Clip]:
    return [c for c in MANIFEST if c.language == language]


def join(
    clips: Sequence[Clip],
    target: Path,
    *,
    gap_s: float = 0.8,
    min_seconds: float = 0.0,
    trailing_gap: bool = True,
    cut: bool = False,
) -> Recording:
    """``clips`` end to end, ``gap_s`` of silence apart, repeated in order until ``min_seconds``.

    ``trailing_gap=False`` leaves out the silence after the last clip (between clips only);
    ``cut`` ends the recording at exactly ``min_seconds``, mid-clip where it falls, while the
    reference keeps every repetition's words. ``language`` is the first clip's.
    """
    ffmpeg = _ffmpeg()
    gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.float32)
    decoded = [decode(c.path, ffmpeg=ffmpeg, timeout_s=60, max_seconds=3600) for c in clips]
    pieces: list[np.ndarray] = []
    references: list[str] = []
    total = 0
    while not pieces or total < min_seconds * SAMPLE_RATE:
        for clip, samples in zip(clips, decoded, strict=True):
            pieces += [samples, gap]
            references.append(clip.reference)
            total += samples.size + gap.size
    if not trailing_gap:
        pieces.pop()
    joined = np.concatenate(pieces)
    if cut:
        joined = joined[: round(min_seconds * SAMPLE_RATE)]
    write_flac(joined, target, ffmpeg=ffmpeg, timeout_s=120)
    return Recording(target, joined.size / SAMPLE_RATE, " ".join(references), clips[0].language)
