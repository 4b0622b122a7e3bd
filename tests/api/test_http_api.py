"""The HTTP contract: the seed's request and response, response formats, health."""

import re

import pytest

from tests.support.corpus import clip, normalise

SHORT = clip("sr_english.wav")
JFK = clip("jfk.flac")


def test_seed_contract_unchanged(client):
    """curl -X POST -F "file=@audio.webm" -F "language=french" .../transcribe"""
    item = clip("fleurs-fr-000.ogg")
    response = client.post(
        "/transcribe", files={"file": ("audio.webm", item.path.read_bytes())}, data={"language": "french"}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"transcript", "language", "duration"}
    assert body["language"] == "fr"
    assert "montagneux" in normalise(body["transcript"])


@pytest.mark.parametrize("language", ["French", "FRENCH", "fr", "Fr", " french "])
def test_language_names_and_codes_case_insensitive(service, language):
    assert service.options(language).language == "fr"


@pytest.mark.parametrize("language", [None, "", "auto", "AUTO"])
def test_language_omitted_or_auto_means_detect(service, language):
    assert service.options(language).language is None


def test_response_formats(client):
    files = {"file": ("jfk.flac", JFK.path.read_bytes())}
    text = client.post("/transcribe", files=files, data={"response_format": "text"})
    assert text.headers["content-type"].startswith("text/plain")
    assert normalise(text.text) == normalise(JFK.reference)

    srt = client.post("/transcribe", files=files, data={"response_format": "srt"}).text
    assert srt.startswith("1\n00:00:00,000 --> ")
    assert re.search(r"\n\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}\n", srt)

    vtt = client.post("/transcribe", files=files, data={"response_format": "vtt"})
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.000 --> ")

    verbose = client.post("/transcribe", files=files, data={"response_format": "verbose_json"}).json()
    assert verbose["segments"][0]["start"] == 0.0
    assert normalise(" ".join(s["text"] for s in verbose["segments"])) == normalise(verbose["transcript"])


def test_unknown_response_format_is_422(client):
    response = client.post(
        "/transcribe", files={"file": ("a.wav", SHORT.path.read_bytes())}, data={"response_format": "pdf"}
    )
    assert response.status_code == 422
    assert "response_format" in response.json()["error"]["message"]


def test_health_reports_engine_model_and_readiness(client):
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "ready": True,
        "engine": "faster-whisper",
        "model": "base",
        "slots": 1,
        "admitted": 0,
    }


def test_every_response_carries_a_request_id(client):
    first = client.get("/health").headers["x-request-id"]
    second = client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second
