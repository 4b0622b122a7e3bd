"""Where the speech is, and how to cut a recording into pieces at its silences.

Whisper decodes 30 s windows one after another, and on a long recording a window that ends
mid-sentence makes the next one start in the wrong place: whole sentences are skipped. Cutting
the recording at silences into pieces that each fit one window, and decoding every piece on its
own, removes that failure and also leaves non-speech (silence, noise) undecoded.

Speech is found with Silero VAD, the ONNX model that faster-whisper ships in its wheel (no
download). Spans are in samples at 16 kHz (``audio.SAMPLE_RATE``).
"""

import logging
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    """``[start, end)`` in samples of the recording it was found in."""

    start: int
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechDetection:
    """Silero VAD's knobs. The defaults are faster-whisper's, except where measured (README)."""

    threshold: float = 0.5
    # A pause shorter than this does not end a run of speech. Runs longer than a piece are split
    # anyway at their last pause of at least ~0.1 s (VadOptions.max_speech_duration_s).
    min_silence_s: float = 0.5
    # Kept on each side of the speech, so that soft word onsets and endings stay in the piece.
    pad_s: float = 0.4
    # A blip shorter than this (a click, a cough) is not speech.
    min_speech_s: float = 0.25


def speech_spans(samples: np.ndarray, detection: SpeechDetection, max_span_s: float) -> list[Span]:
    """Runs of speech, in order, none longer than ``max_span_s``; padded, never overlapping."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if samples.size == 0:
        return []
    options = VadOptions(
        threshold=detection.threshold,
        min_silence_duration_ms=round(detection.min_silence_s * 1000),
        speech_pad_ms=round(detection.pad_s * 1000),
        min_speech_duration_ms=round(detection.min_speech_s * 1000),
        max_speech_duration_s=max_span_s,
    )
    found = get_speech_timestamps(_levelled(samples), options, sampling_rate=SAMPLE_RATE)
    return [Span(int(s["start"]), min(int(s["end"]), samples.size)) for s in found]


_FRAME = 512  # Silero's window at 16 kHz
_LEVEL_TARGET_RMS = 0.1
_LEVEL_FLOOR_RMS = 1e-3  # about -60 dBFS: quieter than this is not raised further
_LEVEL_SPAN_S = 2.0


def _levelled(samples: np.ndarray) -> np.ndarray:
    """The samples brought to one loudness, for the VAD's eyes only.

    Silero VAD adapts to what it has heard: measured on clips of ../shared/audio joined end to
    end, a quiet speaker (peak -48 dBFS) right after loud ones scored 0.00 of its frames as
    speech (0.61 alone) and was dropped whole. Dividing each 32 ms frame by the loudest frame
    within 1 s either side restores it (0.58), and pink or faint white noise still scores none.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    frames = np.pad(samples, (0, -samples.size % _FRAME)).reshape(-1, _FRAME)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1))
    reach = round(_LEVEL_SPAN_S * SAMPLE_RATE / _FRAME) // 2
    envelope = sliding_window_view(np.pad(rms, reach, mode="edge"), 2 * reach + 1).max(axis=1)
    gain = _LEVEL_TARGET_RMS / np.maximum(envelope, _LEVEL_FLOOR_RMS)
    return (frames * gain[:, None].astype(np.float32)).ravel()[: samples.size]


def cut_at_silences(
    samples: np.ndarray,
    max_piece_s: float,
    detection: SpeechDetection | None = None,
) -> list[Span]:
    """Cut 16 kHz mono samples into pieces of at most ``max_piece_s`` that hold all the speech.

    Consecutive runs of speech are grouped into one piece while the group spans at most
    ``max_piece_s`` (the pauses between them stay inside the piece, as context); a new piece
    starts at a pause. A single run longer than ``max_piece_s`` is split at its last short pause
    (about 0.1 s) before the limit, and only without any pause, at the limit itself. Stretches
    with no speech (silence, noise, music without voice) belong to no piece.

    Returns spans in samples, in order, not overlapping, each within ``[0, samples.size]``; an
    empty list when there is no speech. Works for any ``max_piece_s`` from a few seconds (one
    Whisper window: 30 s at most) to minutes (chunks of a long recording, e.g. 300 s).
    """
    if max_piece_s <= 1:
        raise ValueError(f"max_piece_s must be over 1 s, got {max_piece_s}")
    runs = speech_spans(samples, detection or SpeechDetection(), max_piece_s)
    pieces = group_runs(runs, max_piece_s, levels_db(samples, runs))
    logger.debug(
        "%d runs of speech in %.1f s grouped into %d pieces of at most %.0f s",
        len(runs),
        samples.size / SAMPLE_RATE,
        len(pieces),
        max_piece_s,
    )
    return pieces


# Whisper normalises each window to its loudest part, so a quiet speaker sharing a piece with a
# loud one is heard as background: measured, a -48 dBFS clip next to a 0 dBFS one in one piece
# came out as the loud clip's words, twice. Runs this much quieter or louder start a new piece.
MAX_LEVEL_JUMP_DB = 20.0


def levels_db(samples: np.ndarray, runs: list[Span]) -> list[float]:
    """Each run's RMS level, in dB relative to full scale."""
    return [
        10 * float(np.log10(np.mean(np.square(samples[r.start : r.end], dtype=np.float64)) + 1e-12))
        for r in runs
    ]


def group_runs(runs: list[Span], max_piece_s: float, levels: list[float] | None = None) -> list[Span]:
    """Consecutive runs (as ``speech_spans`` gives them) grouped into spans of at most ``max_piece_s``.

    With ``levels`` (``levels_db``), a run more than ``MAX_LEVEL_JUMP_DB`` away from the first
    run of the current group starts a new one.
    """
    limit = round(max_piece_s * SAMPLE_RATE)
    pieces: list[Span] = []
    first_level = 0.0
    for index, run in enumerate(runs):
        level = levels[index] if levels is not None else 0.0
        if pieces and run.end - pieces[-1].start <= limit and abs(level - first_level) <= MAX_LEVEL_JUMP_DB:
            pieces[-1] = Span(pieces[-1].start, run.end)
        else:
            pieces.append(run)
            first_level = level
    return pieces


def widen(pieces: list[Span], total: int, max_length: int) -> list[Span]:
    """Each piece with the silence around it, up to halfway to its neighbours (the recording's
    ends for the first and last), and never past ``max_length`` samples unless it already is.

    A clip recorded on its own comes with its own silences, and Whisper hears it better so than
    trimmed to its speech (README: measured on ../shared/commands and ../shared/audio); a piece
    of a long recording gets the same. A recording whose speech is one piece is then, up to
    ``max_length``, the whole recording.
    """
    widened: list[Span] = []
    for index, piece in enumerate(pieces):
        low = (pieces[index - 1].end + piece.start) // 2 if index else 0
        high = (piece.end + pieces[index + 1].start) // 2 if index + 1 < len(pieces) else total
        room = max(0, max_length - (piece.end - piece.start))
        left = min(piece.start - low, room // 2)
        right = min(high - piece.end, room - left)
        left = min(piece.start - low, room - right)
        widened.append(Span(piece.start - left, piece.end + right))
    return widened


class StreamingSpeech:
    """Silero's speech probability for each 32 ms frame of a live stream, as the audio comes.

    The same ONNX session as ``speech_spans``, fed only the new frames with the model's state
    (and the previous frame's last 64 samples) carried over: the probabilities are those of
    one pass over the whole stream, whatever the pieces (tests/speech/test_live_audio.py),
    for about 2 ms of CPU per second of audio, where running ``speech_spans`` again on the
    open turn at every append would cost in proportion to the turn's length. Frames are
    levelled as ``_levelled`` does, but only by the loudest frame of the second before (a
    live stream has no second after).
    """

    _CONTEXT = 64

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._CONTEXT, dtype=np.float32)
        self._recent_rms = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """The probabilities of every frame completed by ``samples`` (16 kHz float32)."""
        from faster_whisper.vad import get_vad_model

        data = np.concatenate([self._pending, samples])
        count = data.size // _FRAME
        self._pending = data[count * _FRAME :]
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        frames = self._level(data[: count * _FRAME].reshape(count, _FRAME))
        before = np.concatenate([self._context[None, :], frames[:-1, -self._CONTEXT :]])
        self._context = frames[-1, -self._CONTEXT :].copy()
        probabilities, self._h, self._c = get_vad_model().session.run(
            None, {"input": np.concatenate([before, frames], axis=1), "h": self._h, "c": self._c}
        )
        return np.asarray(probabilities, dtype=np.float32).ravel()

    def _level(self, frames: np.ndarray) -> np.ndarray:
        reach = round(_LEVEL_SPAN_S * SAMPLE_RATE / _FRAME) // 2  # frames in a second
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1))
        history = np.concatenate([self._recent_rms, rms])
        envelope = np.array(
            [history[max(0, i - reach) : i + 1].max() for i in range(len(self._recent_rms), history.size)]
        )
        self._recent_rms = history[-reach:]
        gain = _LEVEL_TARGET_RMS / np.maximum(envelope, _LEVEL_FLOOR_RMS)
        return (frames * gain[:, None]).astype(np.float32)
