"""Both engines on real weights: openai-whisper runs on weights derived offline from the packaged model."""

import pytest

from chatserver.audio import decode, ffmpeg_executable
from chatserver.engines import TranscribeOptions, load_engine
from chatserver.languages import LANGUAGES
from speech import clip, normalise

JFK = clip("jfk.flac")


@pytest.fixture(scope="module")
def jfk_samples():
    return decode(JFK.path, ffmpeg=ffmpeg_executable(None), timeout_s=30, max_seconds=60)


def test_both_engines_give_the_same_text(make_settings, jfk_samples):
    options = TranscribeOptions(language="en", beam_size=5)
    reference = load_engine(make_settings(compute_type="float32")).transcribe(jfk_samples, options)
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
