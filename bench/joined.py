"""Long recordings for the benchmark: the clips of each language joined with 0.6 s of silence.

Built in the run's work dir (never committed), as FLAC, so every target reads them as uploads.
The joining itself is tests/support/long_audio.py's, the one the fan-out tests use.
"""

from collections.abc import Sequence
from pathlib import Path

from .common import Clip

GAP_S = 0.6
PREFIX = "joined-"


def is_joined(name: str) -> bool:
    return name.startswith(PREFIX)


def _short_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The clips of 30 s or less, the joined recordings of an earlier step left out."""
    return [item for item in clips if item.duration <= 30 and not is_joined(item.path.name)]


def joined_recordings(clips: Sequence[Clip], workdir: Path) -> tuple[list[Clip], dict[str, list[str]]]:
    """One recording per language with two clips or more; and the clip names each one joins."""
    from tests.support.long_audio import join

    workdir.mkdir(parents=True, exist_ok=True)
    by_language: dict[str, list[Clip]] = {}
    for item in _short_clips(clips):
        by_language.setdefault(item.language, []).append(item)
    recordings, members = [], {}
    for language, group in sorted(by_language.items()):
        if len(group) < 2:
            continue
        path = workdir / f"{PREFIX}{language}-{len(group)}-clips.flac"
        joined = join(group, path, gap_s=GAP_S, trailing_gap=False)
        recordings.append(Clip(joined.path, language, joined.duration, joined.reference))
        members[path.name] = [item.path.name for item in group]
    return recordings, members


def long_uploads(clips: Sequence[Clip], workdir: Path, seconds: float, with_speech: bool) -> list[Clip]:
    """``seconds`` of silence, and (``with_speech``) the joined clips repeated up to ``seconds``."""
    import numpy as np

    from chatserver.speech.audio import SAMPLE_RATE, ffmpeg_executable, write_flac
    from tests.support.long_audio import join

    workdir.mkdir(parents=True, exist_ok=True)
    silence = workdir / f"{PREFIX}silence-{seconds:.0f}s.flac"
    samples = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)
    write_flac(samples, silence, ffmpeg=ffmpeg_executable(None), timeout_s=120)
    out = [Clip(silence, "en", seconds, "")]
    if with_speech:
        speech = workdir / f"{PREFIX}speech-{seconds:.0f}s.flac"
        joined = join(_short_clips(clips), speech, gap_s=GAP_S, min_seconds=seconds, cut=True)
        out.append(Clip(joined.path, "en", seconds, joined.reference))
    return out
