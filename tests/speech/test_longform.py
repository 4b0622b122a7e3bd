"""Long recordings cut at silences, and the encoder window sized to each piece (issue 9).

The long recordings are built here from the clips of ../shared/audio, joined per language with
0.6 s of silence between them, so the clip boundaries are known. Every transcription is made
once per module with one engine per window setting and shared by the tests.
"""

import sys
import threading
import time
from dataclasses import dataclass

import jiwer
import numpy as np
import pytest

from chatserver.core.settings import Settings
from chatserver.speech.audio import SAMPLE_RATE, decode, ffmpeg_executable
from chatserver.speech.engines import load_engine
from chatserver.speech.service import TranscriptionService
from chatserver.speech.transcript import Transcript
from tests.support.corpus import MANIFEST, Clip, clip, normalise
from tests.support.engines import EngineWrapper

LANGUAGES = ["de", "en", "es", "fr"]
GAP_S = 0.6
SHORT_S = 5.0


@dataclass
class Joined:
    samples: np.ndarray
    bounds: list[tuple[float, float]]  # each clip's [start, end) in seconds
    references: list[str]


def short_clips(language: str) -> list[Clip]:
    return [c for c in MANIFEST if c.language == language and not c.path.name.startswith("long-")]


@pytest.fixture(scope="module")
def decoded() -> dict[str, np.ndarray]:
    ffmpeg = ffmpeg_executable(None)
    return {
        c.path.name: decode(c.path, ffmpeg=ffmpeg, timeout_s=60, max_seconds=600)
        for c in MANIFEST
        if not c.path.name.startswith("long-")
    }


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TranscriptionService]:
    tmp = tmp_path_factory.mktemp("service-tmp")
    sized = Settings(tmp_dir=tmp)
    full = Settings(tmp_dir=tmp, sized_window=False)
    return {
        "sized": TranscriptionService(sized, load_engine(sized)),
        "full": TranscriptionService(full, load_engine(full)),
    }


# one_by_one and joined transcribe every short clip three times (sized, full window, joined):
# about 70 s on two cores, so the tests that use them are marked slow.
@pytest.fixture(scope="module")
def one_by_one(services, decoded) -> dict[str, dict[str, Transcript]]:
    """Every short clip sent on its own, with the window sized (the default) and at 30 s."""
    results: dict[str, dict[str, Transcript]] = {}
    for name, service in services.items():
        results[name] = {
            c.path.name: service.transcribe_samples(decoded[c.path.name], service.options(c.language))
            for language in LANGUAGES
            for c in short_clips(language)
        }
    return results


def join(language: str, decoded: dict[str, np.ndarray]) -> Joined:
    gap = np.zeros(round(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts, bounds, references, at = [], [], [], 0.0
    for item in short_clips(language):
        samples = decoded[item.path.name]
        parts += [samples, gap]
        bounds.append((at, at + samples.size / SAMPLE_RATE))
        references.append(item.reference)
        at += samples.size / SAMPLE_RATE + GAP_S
    return Joined(np.concatenate(parts[:-1]), bounds, references)


@pytest.fixture(scope="module")
def joined(services, decoded) -> dict[str, tuple[Joined, Transcript]]:
    service = services["sized"]
    results = {}
    for language in LANGUAGES:
        recording = join(language, decoded)
        results[language] = (
            recording,
            service.transcribe_samples(recording.samples, service.options(language)),
        )
    return results


def corpus_wer(clips: list[Clip], transcripts: dict[str, Transcript]) -> float:
    return jiwer.wer(
        [normalise(c.reference) for c in clips], [normalise(transcripts[c.path.name].text) for c in clips]
    )


@pytest.mark.slow
@pytest.mark.parametrize("language", LANGUAGES)
def test_joined_recording_loses_no_more_than_clip_by_clip(language, joined, one_by_one):
    recording, transcript = joined[language]
    separate = corpus_wer(short_clips(language), one_by_one["sized"])
    together = jiwer.wer(normalise(" ".join(recording.references)), normalise(transcript.text))
    assert together <= separate + 0.03, f"{language}: joined {together:.3f}, clip by clip {separate:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("language", LANGUAGES)
def test_joined_segments_in_order_inside_the_duration_and_the_clips(language, joined):
    recording, transcript = joined[language]
    duration = recording.samples.size / SAMPLE_RATE
    assert transcript.duration == pytest.approx(duration, abs=0.01)
    assert transcript.segments
    previous_end = 0.0
    for segment in transcript.segments:
        assert previous_end - 0.01 <= segment.start <= segment.end <= duration + 0.01
        previous_end = segment.end
        # A segment sits in one clip: its middle is inside that clip's bounds (Whisper's
        # timestamps are 20 ms steps and may reach a little into the silence around it).
        middle = (segment.start + segment.end) / 2
        assert any(start - 0.3 <= middle <= end + 0.3 for start, end in recording.bounds), (
            f"{language}: segment {segment.start:.2f}-{segment.end:.2f} {segment.text!r} is in no clip"
        )
    # Every clip's speech is somewhere in the transcript's timeline.
    for start, end in recording.bounds:
        assert any(s.start < end and s.end > start for s in transcript.segments), (
            f"{language}: no segment covers the clip at {start:.1f}-{end:.1f} s"
        )


def test_long_webm_keeps_its_first_sentence(services):
    service = services["sized"]
    item = clip("long-fr-fleurs-000-004.webm")
    transcript = service.transcribe(item.path, service.options("fr"))
    text = normalise(transcript.text)
    # Decoded as one 30 s window after another, Whisper base skipped this first sentence (0-10 s).
    assert "accident a eu lieu" in text
    assert "dix sept personnes" in text or "17 personnes" in text
    assert jiwer.wer(normalise(item.reference), text) <= 0.30


# The bound is per language: the sized window no worse than the full one by 0.01. Here a
# language has 62-240 words (de 3 clips, en 7, es 3, fr 20), so 0.01 is one or two words, and
# which words differ is search chance that moves with the machine: on one AMD EPYC es 0.088 sized
# against 0.069 full and en 0.093 against 0.101, on another es 0.078 against 0.059 and en 0.109
# against 0.093 (same pinned packages). The Spanish pair ("pueden poderar" for "puede
# empoderar") comes out of the full window too at beam 1, 2, 3, 8 and 16, and the full window's
# own encoder scores it likelier (forced alignment). So the bound is held where there are
# enough words for 0.01 to mean something, all 533 together; per language the guard is 0.03
# (the tolerance for long recordings), against a window that really breaks a language.
# Both figures are written to the run's output and kept in the README.
def sized_and_full(clips: list[Clip], one_by_one, label: str, capsys) -> tuple[float, float]:
    """Corpus WER of ``clips`` with the sized and the full window, both written to the run's output."""
    sized, full = corpus_wer(clips, one_by_one["sized"]), corpus_wer(clips, one_by_one["full"])
    with capsys.disabled():
        sys.stdout.write(f"\n[sized window] {label}: sized {sized:.3f}, full window {full:.3f}\n")
    return sized, full


@pytest.mark.slow
def test_sized_window_as_accurate_as_the_full_window(one_by_one, capsys):
    clips = [c for language in LANGUAGES for c in short_clips(language)]
    sized, full = sized_and_full(clips, one_by_one, f"all {len(clips)} clips", capsys)
    assert sized <= full + 0.01, f"all clips: sized window {sized:.3f}, full window {full:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("language", LANGUAGES)
def test_sized_window_breaks_no_language(language, one_by_one, capsys):
    sized, full = sized_and_full(short_clips(language), one_by_one, language, capsys)
    assert sized <= full + 0.03, f"{language}: sized window {sized:.3f}, full window {full:.3f}"


@pytest.mark.slow
def test_sized_window_on_short_clips(one_by_one, capsys):
    clips = [c for language in LANGUAGES for c in short_clips(language) if c.duration < SHORT_S]
    assert len(clips) >= 10
    sized, full = sized_and_full(clips, one_by_one, f"{len(clips)} clips under {SHORT_S:.0f} s", capsys)
    assert sized <= full + 0.02, (
        f"clips under {SHORT_S:.0f} s: sized window {sized:.3f}, full window {full:.3f}"
    )


class CountingEngine(EngineWrapper):
    """The real engine, counting its calls and how many ran at once."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self._lock = threading.Lock()
        self.running = self.most_at_once = self.calls = 0
        self.started: list[float] = []

    def transcribe(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.started.append(time.perf_counter())
        try:
            return self.engine.transcribe(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


def counting_service(tmp_path, workers: int) -> tuple[TranscriptionService, CountingEngine]:
    settings = Settings(tmp_dir=tmp_path, max_concurrent_jobs=workers)
    engine = CountingEngine(load_engine(settings))
    assert engine.workers == workers
    return TranscriptionService(settings, engine), engine


def test_pieces_decoded_at_once_come_back_as_one_at_a_time(tmp_path, decoded):
    recording = join("en", decoded)
    (one, one_engine), (two, two_engine) = counting_service(tmp_path, 1), counting_service(tmp_path, 2)
    alone = one.transcribe_samples(recording.samples, one.options("en"))
    together = two.transcribe_samples(recording.samples, two.options("en"))
    assert two_engine.calls == one_engine.calls > 2
    assert (one_engine.most_at_once, two_engine.most_at_once) == (1, 2)
    assert together.segments == alone.segments
    assert together.text == alone.text


def test_an_exception_from_on_segment_stops_the_work(tmp_path, decoded):
    service, engine = counting_service(tmp_path, 2)
    # Long enough that the other worker cannot finish every piece while the first one decodes.
    samples = np.tile(join("en", decoded).samples, 3)
    seen = []

    class Stop(Exception):
        pass

    def stop(segment) -> None:
        seen.append(segment)
        raise Stop()

    with pytest.raises(Stop):
        service.transcribe_samples(samples, service.options("en"), on_segment=stop)
    raised, calls = time.perf_counter(), engine.calls
    assert len(seen) == 1
    # The pieces already running when it raised finish; no other one starts.
    assert engine.running == 0
    assert all(started < raised for started in engine.started)
    service.transcribe_samples(samples, service.options("en"))
    assert calls < engine.calls - calls, "it decoded as many pieces as a whole transcription"


def test_a_quiet_speaker_next_to_a_loud_one_is_kept(services, decoded):
    """fleurs-fr-000 peaks at -48 dBFS, stp-fr-01 at 0 dBFS: both must come out, in order."""
    service = services["sized"]
    gap = np.zeros(round(GAP_S * SAMPLE_RATE), dtype=np.float32)
    quiet, loud = decoded["fleurs-fr-000.ogg"], decoded["stp-fr-01.wav"]
    for parts, order in (
        ([loud, gap, quiet], ("chambre", "accident")),
        ([quiet, gap, loud], ("accident", "chambre")),
    ):
        text = normalise(service.transcribe_samples(np.concatenate(parts), service.options(None)).text)
        assert all(word in text for word in order), text
        assert text.index(order[0]) < text.index(order[1]), text
        assert text.count("chambre") == 1, text


def test_a_voice_note_without_a_language_is_encoded_once(services, decoded, monkeypatch):
    """Its language is detected on the very window it is decoded in, which is encoded once."""
    from faster_whisper import WhisperModel

    service = services["sized"]
    encoded = []
    real = WhisperModel.encode
    monkeypatch.setattr(WhisperModel, "encode", lambda self, f: encoded.append(f.shape) or real(self, f))
    note = decoded["fleurs-fr-000.ogg"]
    detected = service.transcribe_samples(note, service.options(None))
    assert (detected.language, len(encoded)) == ("fr", 1)
    # Given the language, the same note is encoded once too: nothing was left over for it.
    given = service.transcribe_samples(note, service.options("fr"))
    assert len(encoded) == 2
    assert given.segments == detected.segments
