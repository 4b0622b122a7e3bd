"""Live PCM16 audio (OpenAI's Realtime input: mono, 24 kHz, little-endian) to 16 kHz samples.

The samples are those ``audio.decode`` would give for the same audio: libswresample (through
PyAV, which faster-whisper already needs) with FFmpeg's default filter, rounded to 16-bit and
scaled by 1/32768. Measured on a FLEURS clip, fed in pieces of 20 ms, 100 ms or 1 s, they
match FFmpeg's command line sample for sample, for about 1 ms of CPU per second of audio
(tests/speech/test_live_audio.py). Resampling in numpy alone would be a filter of our own
that /transcribe does not use, and a chunked one needs the filter's state kept between
pieces, which the resampler already keeps.
"""

import av
import numpy as np

from .audio import SAMPLE_RATE

INPUT_RATE = 24_000
INPUT_BYTES_PER_SECOND = INPUT_RATE * 2


class Pcm16Resampler:
    """Appended PCM16 bytes in, float32 samples at 16 kHz out, in order.

    Keeps a byte of an odd-sized append for the next, and the filter's state between
    appends, so the pieces' outputs joined are the output of the whole.
    """

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._odd = b""

    def feed(self, pcm: bytes) -> np.ndarray:
        data = self._odd + pcm
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        if usable == 0:
            return np.zeros(0, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(data[:usable], dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = INPUT_RATE
        return _to_float(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """What the filter still holds (a few samples); the resampler starts afresh after it."""
        tail = _to_float(self._resampler.resample(None))
        self._start()
        return tail


def _to_float(frames: "list[av.AudioFrame]") -> np.ndarray:  # quoted: av loads on first use
    if not frames:
        return np.zeros(0, dtype=np.float32)
    pcm = np.concatenate([f.to_ndarray().ravel() for f in frames])
    samples = pcm.astype(np.float32)
    samples /= 32768.0  # as audio.decode scales FFmpeg's s16le
    return samples
