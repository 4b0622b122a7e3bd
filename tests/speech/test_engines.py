"""Both engines on real weights: openai-whisper runs on weights derived offline from the packaged model."""

import pytest

from chatserver.speech.audio import decode, ffmpeg_executable
from chatserver.speech.engines import TranscribeOptions, load_engine
from chatserver.speech.languages import LANGUAGES
from tests.support.corpus import clip, normalise

JFK = clip("jfk.flac")


@pytest.fixture(scope="module")
def jfk_samples():
    return decode(JFK.path, ffmpeg=ffmpeg_executable(None), timeout_s=30, max_seconds=60)


@pytest.mark.slow
def test_both_engines_give_the_same_text(make_settings, jfk_samples):
    options = TranscribeOptions(language="en", beam_size=5)
    # The openai-whisper engine always decodes 30 s windows: so does the reference here.
    reference = load_engine(make_settings(compute_type="float32", sized_window=False)).transcribe(
        jfk_samples, options
    )
    openai = load_engine(make_settings(engine="openai-whisper")).transcribe(jfk_samples, options)
    default = load_engine(make_settings()).transcribe(jfk_samples, options)

    assert openai.text == reference.text, "same weights, same precision: the same text"
    assert normalise(default.text) == normalise(openai.text) == normalise(JFK.reference)
    assert openai.language == reference.language == "en"
    assert [round(s.start) for s in openai.segments] == [round(s.start) for s in reference.segments]


def test_openai_engine_detects_language_and_serves_http(make_settings):
    from fastapi.testclient import TestClient

    from chatserver.api.app import create_app

    settings = make_settings(engine="openai-whisper")
    item = clip("fleurs-de-000.ogg")
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["engine"] == "openai-whisper"
        response = client.post("/transcribe", files={"file": ("de.ogg", item.path.read_bytes())})
    assert response.status_code == 200
    assert response.json()["language"] == "de"


def test_progress_reaches_one(service):
    seen: list[float] = []
    service.transcribe(clip("long-fr-fleurs-000-004.webm").path, service.options("fr"), progress=seen.append)
    assert len(seen) > 1
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0, abs=0.05)


def test_language_table_matches_whisper():
    from whisper.tokenizer import LANGUAGES as WHISPER_LANGUAGES

    assert WHISPER_LANGUAGES == LANGUAGES


def test_window_rule():
    from chatserver.speech.engines.base import WindowRule

    rule = WindowRule(enabled=True, min_s=10, margin_s=3)
    assert rule.frames(2 * 16_000) == 1000  # the floor
    assert rule.frames(12 * 16_000) == 1500  # the piece and its margin
    assert rule.frames(28 * 16_000) == 3000  # never past Whisper's window
    assert WindowRule(enabled=False).frames(2 * 16_000) == 3000
    # A voice note's window may be shorter than what the decoder sees; a long recording's run not.
    default = WindowRule(min_s=5)
    assert default.frames(1 * 16_000) == 500
    assert default.frames(1 * 16_000, note=False) == default.decoder_frames == 1500
    assert default.frames(20 * 16_000, note=False) == 2300
    assert default.silent_tail
    assert not WindowRule(min_s=15).silent_tail


def test_sized_windows_share_no_state_between_concurrent_calls(make_settings, jfk_samples):
    """Each call's window is its own: the shared feature extractor is never rewritten."""
    from concurrent.futures import ThreadPoolExecutor

    engine = load_engine(make_settings(max_concurrent_jobs=2))
    shared = engine._model.feature_extractor  # what faster-whisper's own chunk_length rewrites
    before = (shared.nb_max_frames, shared.n_samples, shared.chunk_length)
    options = TranscribeOptions(language="en", beam_size=5)
    short = jfk_samples[: 4 * 16_000]
    alone = [engine.transcribe(audio, options).text for audio in (jfk_samples, short)]
    with ThreadPoolExecutor(2) as pool:
        together = list(
            pool.map(lambda audio: engine.transcribe(audio, options).text, [jfk_samples, short] * 2)
        )
    assert together == alone * 2
    assert (shared.nb_max_frames, shared.n_samples, shared.chunk_length) == before == (3000, 480_000, 30)
    assert normalise(alone[0]) == normalise(JFK.reference)


def test_the_decoder_sees_the_sized_window_then_a_silent_one(make_settings, jfk_samples):
    """The encoder runs on the sized window only; past it the decoder gets the encoding of a
    silent window, up to ``window_decoder_min_s`` (sized_window.py)."""
    import numpy as np
    from faster_whisper.audio import pad_or_trim

    engine = load_engine(make_settings(window_min_s=5))
    note = jfk_samples[: 2 * 16_000]
    frames = engine.window.frames(note.size)
    assert frames == 500  # the 5 s floor
    view = engine._sized(frames)
    # As faster-whisper's generate_segments hands a window to the encoder: padded to 30 s.
    features = pad_or_trim(view.feature_extractor(note))
    seen = np.asarray(view.encode(features))
    own = np.asarray(engine._model.encode(features[..., :frames]))

    assert seen.shape == (1, engine.window.decoder_frames // 2, 512) == (1, 750, 512)
    np.testing.assert_allclose(seen[:, : frames // 2], own[:, : frames // 2], atol=1e-4)
    np.testing.assert_array_equal(seen[:, frames // 2 :], engine._silence[:, frames // 2 : 750])
    # A window at least as long as the decoder's minimum is its own encoding only.
    long_view = engine._sized(1600)
    long_features = pad_or_trim(long_view.feature_extractor(jfk_samples))
    assert np.asarray(long_view.encode(long_features)).shape == (1, 800, 512)


def test_the_silent_window_is_computed_once_and_kept(make_settings, tmp_path):
    import numpy as np

    from chatserver.speech.engines.sized_window import silent_window

    model = load_engine(make_settings())._model
    cache = tmp_path / "models"
    first = silent_window(model, cache, "key")
    kept = cache / "silent-window-key.npy"
    assert first.shape == (1, 1500, 512)
    assert kept.is_file()

    class NoEncoder:  # read back, not computed again
        feature_extractor = model.feature_extractor

        def encode(self, *_):
            raise AssertionError("the kept encoding was not used")

    np.testing.assert_array_equal(silent_window(NoEncoder(), cache, "key"), first)
    kept.write_bytes(b"\x93NUMPY truncated")  # a broken file is computed again and replaced
    np.testing.assert_allclose(silent_window(model, cache, "key"), first, atol=1e-4)
    assert np.load(kept).shape == (1, 1500, 512)
    # Where nothing can be kept (a read-only model dir), it is computed at every start.
    blocked = cache / "file"
    blocked.write_text("not a directory")
    np.testing.assert_allclose(silent_window(model, blocked, "key"), first, atol=1e-4)
    assert sorted(p.name for p in cache.iterdir()) == ["file", "silent-window-key.npy"]


def test_a_second_decode_that_looks_wrong_too_leaves_the_first(make_settings, monkeypatch, jfk_samples):
    """Whisper's fallbacks sample at temperatures up to 1.0: on a few words they can run away (224
    tokens of symbols for a 2.7 s Mongolian command, 2 draws in 12 here) or fail every threshold
    with a different draw each run. Sampling cannot be made to do either on demand, so here the real
    decodes are made to look so: the sized window's under Whisper's log-probability threshold,
    the 30 s window's as each case says."""
    from chatserver.speech.engines.decode_checks import token_allowance
    from chatserver.speech.engines.faster import FasterWhisperEngine
    from chatserver.speech.engines.sized_window import SizedWindow
    from chatserver.speech.transcript import Transcript

    engine = load_engine(make_settings(window_min_s=5))
    note = jfk_samples[: 3 * 16_000]
    allowance = token_allowance(note.size)
    real = FasterWhisperEngine._decode
    second = {}
    first_loops = False

    def decode(model, audio, options, progress, on_segment, max_new_tokens=None):
        decoded = real(model, audio, options, progress, on_segment, max_new_tokens)
        if isinstance(model, SizedWindow):
            update = {"avg_logprob": -1.5}
            if first_loops:  # stopped at its allowance inside a loop, cut mid-word
                update |= {"text": " Ask not. ask not, Ask no", "tokens": [0] * allowance}
            unsure = [s.model_copy(update=update) for s in decoded.segments]
            return Transcript.of_segments(unsure, decoded.language, decoded.duration)
        return Transcript.of_segments([decoded.segments[0].model_copy(update=second)], "en", decoded.duration)

    monkeypatch.setattr(FasterWhisperEngine, "_decode", staticmethod(decode))
    options = TranscribeOptions(language="en", beam_size=5, note=True)

    # Past the allowance: a runaway.
    second = {"text": " 2.0" * 40, "tokens": [0] * (allowance + 1), "avg_logprob": -0.1}
    seen = []
    kept = engine.transcribe(note, options, on_segment=seen.append)
    assert "2.0" not in kept.text
    assert normalise(kept.text).startswith("and so my fellow")
    assert seen == kept.segments  # handed on once, the chosen ones
    # Every temperature under Whisper's threshold: the temperature-0 decode, not the last draw.
    second = {"text": " Sampled words.", "tokens": [0] * 4, "avg_logprob": -1.2, "temperature": 1.0}
    assert normalise(engine.transcribe(note, options).text).startswith("and so my fellow")
    # A first decode cut inside a loop stands as the loop's first pass, its tokens with it.
    first_loops = True
    (segment,) = engine.transcribe(note, options).segments
    assert segment.text.strip() == "Ask not."
    assert segment.tokens == engine._model.hf_tokenizer.encode(" Ask not.", add_special_tokens=False).ids
    # A second decode within the allowance that passes Whisper's thresholds is taken, as the
    # bare engine's.
    second = {"text": " Sampled words.", "tokens": [0] * 4, "avg_logprob": -0.4, "temperature": 0.6}
    assert engine.transcribe(note, options).text == "Sampled words."


def test_a_voice_note_leaves_pyav_unloaded_until_live_audio_needs_it(tmp_path):
    """faster-whisper imports PyAV for a decoder the service never calls: its libraries were 0.2 s
    of a cold start, so it loads on first use (speech/__init__.py). In a fresh process, as the
    server starts: the app and the model loaded, a voice note transcribed, then live audio."""
    import subprocess
    import sys

    script = """
import sys
from pathlib import Path
import chatserver.api.app
from chatserver.core.settings import Settings
from chatserver.speech.service import TranscriptionService
service = TranscriptionService.from_settings(Settings(tmp_dir=sys.argv[1]))
print(service.transcribe(Path(sys.argv[2]), service.options("en")).text.strip())
print(type(sys.modules["av"]).__name__)
from chatserver.speech.pcm import Pcm16Resampler
print(Pcm16Resampler().feed(bytes(960)).size, type(sys.modules["av"]).__name__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(JFK.path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text, before, after = done.stdout.strip().splitlines()
    assert normalise(text) == normalise(JFK.reference)
    assert before == "_LoadedOnFirstUse"
    resampled, loaded = after.split()
    # 480 samples at 24 kHz are 320 at 16 kHz, less what the real resampler's filter holds back.
    assert (loaded, 300 <= int(resampled) <= 320) == ("module", True)


def test_a_language_the_short_window_is_unsure_of_is_detected_again_in_the_decoders(
    make_settings, jfk_samples, caplog
):
    """stp-fr-10 ("combien fait-il", 1.9 s): its 5 s window's best guess is English at 0.18; a
    window of the decoder's 15 s says French, as the bare engine's 30 s does (measured here)."""
    import logging

    engine = load_engine(make_settings())
    note = decode(clip("stp-fr-10.wav").path, ffmpeg=ffmpeg_executable(None), timeout_s=30, max_seconds=60)
    frames = engine.window.frames(note.size)
    short = engine._sized(frames).detect_language_of(note, keep=False)
    wide = engine._sized(engine.window.decoder_frames).detect_language_of(note, keep=False)
    assert (frames, short[0][0], wide[0][0]) == (500, "en", "fr")
    assert short[0][1] < 0.5

    with caplog.at_level(logging.INFO, logger="chatserver.speech.engines.faster"):
        detected = engine.detect_language(note)
        assert [(g.code, g.probability) for g in detected] == wide
        assert "again in 1500" in caplog.text
        caplog.clear()
        # A language the short window is sure of stands: one detection.
        assert engine.detect_language(jfk_samples[: 3 * 16_000])[0].code == "en"
        assert "again in" not in caplog.text
