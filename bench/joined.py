"""Long recordings for the benchmark: the clips of each language joined with 0.6 s of silence.

Built in the run's work dir (never committed), as FLAC, so every target reads them as uploads.
"""

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .common import Clip

GAP_S = 0.6
PREFIX = "joined-"


def is_joined(name: str) -> bool:
    return name.startswith(PREFIX)


def joined_recordings(clips: Sequence[Clip], workdir: Path) -> tuple[list[Clip], dict[str, list[str]]]:
    """One recording per language with two clips or more; and the clip names each one joins."""
    from chatserver.speech.audio import SAMPLE_RATE, decode, ffmpeg_executable, write_flac

    ffmpeg = ffmpeg_executable(None)
    workdir.mkdir(parents=True, exist_ok=True)
    by_language: dict[str, list[Clip]] = {}
    for item in clips:
        if item.duration <= 30 and not is_joined(item.path.name):
            by_language.setdefault(item.language, []).append(item)
    recordings, members = [], {}
    gap = np.zeros(round(GAP_S * SAMPLE_RATE), dtype=np.float32)
    for language, group in sorted(by_language.items()):
        if len(group) < 2:
            continue
        parts = []
        for item in group:
            parts += [decode(item.path, ffmpeg=ffmpeg, timeout_s=60, max_seconds=600), gap]
        samples = np.concatenate(parts[:-1])
        path = workdir / f"{PREFIX}{language}-{len(group)}-clips.flac"
        write_flac(samples, path, ffmpeg=ffmpeg, timeout_s=120)
        reference = " ".join(item.reference for item in group)
        recordings.append(Clip(path, language, samples.size / SAMPLE_RATE, reference))
        members[path.name] = [item.path.name for item in group]
    return recordings, members


def long_uploads(clips: Sequence[Clip], workdir: Path, seconds: float, with_speech: bool) -> list[Clip]:
    """``seconds`` of silence, and (``with_speech``) the joined clips repeated up to ``seconds``."""
    from chatserver.speech.audio import SAMPLE_RATE, decode, ffmpeg_executable, write_flac

    ffmpeg = ffmpeg_executable(None)
    workdir.mkdir(parents=True, exist_ok=True)
    total = round(seconds * SAMPLE_RATE)
    uploads = [("silence", np.zeros(total, dtype=np.float32), "")]
    if with_speech:
        gap = np.zeros(round(GAP_S * SAMPLE_RATE), dtype=np.float32)
        parts, words = [], []
        for item in clips:
            if item.duration <= 30 and not is_joined(item.path.name):
                parts += [decode(item.path, ffmpeg=ffmpeg, timeout_s=60, max_seconds=600), gap]
                words.append(item.reference)
        once = np.concatenate(parts)
        repeats = math.ceil(total / once.size)
        uploads.append(("speech", np.tile(once, repeats)[:total], " ".join(words * repeats)))
    out = []
    for name, samples, reference in uploads:
        path = workdir / f"{PREFIX}{name}-{seconds:.0f}s.flac"
        write_flac(samples, path, ffmpeg=ffmpeg, timeout_s=120)
        out.append(Clip(path, "en", seconds, reference))
    return out
