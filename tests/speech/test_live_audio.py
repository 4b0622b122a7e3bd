"""Live audio's two steps before any decode: PCM16 at 24 kHz resampled to the 16 kHz samples
/transcribe would decode, and Silero's speech probabilities computed frame by frame as the
audio comes. Real FFmpeg, the real VAD model, real recordings of ../shared/audio."""

import itertools
import subprocess
import time

import numpy as np
import pytest
from imageio_ffmpeg import get_ffmpeg_exe

from chatserver.speech.audio import SAMPLE_RATE
from chatserver.speech.pcm import Pcm16Resampler
from chatserver.speech.segmentation import SpeechDetection, StreamingSpeech, speech_spans
from tests.support.corpus import clip
from tests.support.live import pcm24, sentences

CLIP = clip("fleurs-en-000.ogg")


def ffmpeg_16k(pcm: bytes) -> np.ndarray:
    """What POST /transcribe's decode (speech/audio.py) makes of the same raw audio."""
    command = [get_ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "s16le", "-ar", "24000", "-ac", "1"]
    command += ["-i", "pipe:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1"]
    out = subprocess.run(command, input=pcm, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(out, dtype=np.int16).astype(np.float32) / 32768.0


def resampled(pcm: bytes, piece_bytes: int) -> np.ndarray:
    resampler = Pcm16Resampler()
    parts = [resampler.feed(pcm[i : i + piece_bytes]) for i in range(0, len(pcm), piece_bytes)]
    return np.concatenate([*parts, resampler.flush()])


@pytest.mark.parametrize("piece_bytes", [961, 4800, 48_000])  # 20 ms and odd, 100 ms, 1 s
def test_resampled_pieces_are_what_transcribe_decodes_sample_for_sample(piece_bytes: int) -> None:
    pcm = pcm24(CLIP)
    expected = ffmpeg_16k(pcm)
    got = resampled(pcm, piece_bytes)
    assert got.dtype == np.float32
    assert got.size == expected.size, (got.size, expected.size)
    assert np.array_equal(got, expected), float(np.abs(got - expected).max())


def test_resampling_costs_a_few_ms_per_second_of_audio() -> None:
    pcm = pcm24(CLIP)
    started = time.process_time()
    resampled(pcm, 4800)
    cpu = (time.process_time() - started) / (len(pcm) / 48_000)
    assert cpu < 0.02, cpu  # measured about 1 ms


def streamed(samples: np.ndarray, pieces: int) -> np.ndarray:
    speech = StreamingSpeech()
    bounds = np.linspace(0, samples.size, pieces + 1).astype(int)
    return np.concatenate([speech.feed(samples[a:b]) for a, b in itertools.pairwise(bounds)])


def test_streamed_probabilities_do_not_depend_on_how_the_audio_is_cut() -> None:
    samples = ffmpeg_16k(sentences([CLIP, clip("fleurs-en-003.ogg")]).pcm)
    whole = streamed(samples, 1)
    assert whole.size == samples.size // 512
    for pieces in (7, 113, samples.size // 1600):  # down to 100 ms appends
        assert np.array_equal(streamed(samples, pieces), whole), pieces


def test_streamed_speech_is_where_the_service_finds_speech() -> None:
    """Two sentences with 1.5 s between them: the frames over 0.5 lie inside the speech runs
    that speech_spans finds on the whole recording, and the pause between them scores none."""
    speech = sentences([CLIP, clip("fleurs-en-003.ogg")])
    samples = ffmpeg_16k(speech.pcm)
    started = time.process_time()
    probabilities = streamed(samples, samples.size // 2400)  # 150 ms appends
    cpu = (time.process_time() - started) / (samples.size / SAMPLE_RATE)
    runs = speech_spans(samples, SpeechDetection(pad_s=0.0), 30)
    assert len(runs) >= 2, runs
    voiced = np.flatnonzero(probabilities >= 0.5) * 512
    inside = sum(any(r.start - 1600 <= v < r.end + 1600 for r in runs) for v in voiced)
    assert inside >= 0.97 * voiced.size, (inside, voiced.size)
    first_clip_end = round((0.5 + len(pcm24(CLIP)) / 48_000) * SAMPLE_RATE)
    pause = probabilities[(first_clip_end + 4000) // 512 : (first_clip_end + 20000) // 512]
    assert pause.max() < 0.35, pause.max()
    assert cpu < 0.05, cpu  # measured about 3 ms
