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
