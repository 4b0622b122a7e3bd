"""Cutting a long recording into chunks at silences (each is written as FLAC, ``audio.write_flac``).

The cut is a cheap energy search rather than a VAD model: within the last ``search_s`` seconds
before a chunk's maximum length, the quietest 0.3 s (mean power) is where the chunk ends. On
speech there is always a pause between words in a window of tens of seconds, so the cut lands
in a pause, not inside a word; the runner logs each cut's level against the speech's so a
recording without pauses shows in the logs.
"""

from dataclasses import dataclass

import numpy as np

from ..speech.audio import SAMPLE_RATE
from ..speech.segmentation import Span

_FRAME = SAMPLE_RATE // 100  # 10 ms
_QUIET_WINDOW_FRAMES = 30  # 0.3 s: longer than a stop consonant, shorter than a pause between phrases


@dataclass(frozen=True)
class Cut(Span):
    """One chunk as sample offsets, ``end`` exclusive; ``level_db`` is the quiet window's power at its end."""

    level_db: float = 0.0


def frame_power_db(samples: np.ndarray) -> np.ndarray:
    """Mean power of every 10 ms frame, smoothed over 0.3 s, in dB (full scale 0 dB)."""
    frames = samples[: samples.size // _FRAME * _FRAME].reshape(-1, _FRAME).astype(np.float64)
    power = np.mean(frames * frames, axis=1)
    if power.size >= _QUIET_WINDOW_FRAMES:
        power = np.convolve(power, np.ones(_QUIET_WINDOW_FRAMES) / _QUIET_WINDOW_FRAMES, mode="same")
    return 10 * np.log10(power + 1e-10)


def cut_at_silences(samples: np.ndarray, max_chunk_s: float, search_s: float) -> list[Cut]:
    """Chunks of at most ``max_chunk_s`` that together cover ``samples``, each cut in the quietest spot."""
    if max_chunk_s <= 0 or not 0 < search_s < max_chunk_s:
        raise ValueError("need 0 < search_s < max_chunk_s")
    power = frame_power_db(samples)
    max_frames = int(max_chunk_s * 100)
    search_frames = int(search_s * 100)
    total = samples.size
    cuts: list[Cut] = []
    start_frame = 0
    total_frames = power.size
    while (total - start_frame * _FRAME) > max_frames * _FRAME:
        # Never closer to the end than the search length: the pause before a recording's
        # trailing silence must not leave a last chunk of a few milliseconds.
        high = min(start_frame + max_frames, total_frames - search_frames)
        low = min(start_frame + max_frames - search_frames, high - 1)
        window = power[low:high]
        # The latest of equally quiet frames: chunks stay as long as they may.
        end_frame = low + window.size - 1 - int(np.argmin(window[::-1]))
        cuts.append(Cut(start_frame * _FRAME, end_frame * _FRAME, float(power[end_frame])))
        start_frame = end_frame
    cuts.append(Cut(start_frame * _FRAME, total, float(power[-1]) if power.size else -100.0))
    return cuts
