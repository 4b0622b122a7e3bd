"""POST /detect-language on real recordings: the language of the first 30 s, and four more."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatserver.api.app import create_app
from tests.support.corpus import clip
from tests.support.long_audio import join

FRENCH = clip("fleurs-fr-000.ogg")


def detect(client, path: Path):
    return client.post("/detect-language", files={"file": (path.name, path.read_bytes())})


@pytest.mark.parametrize(
    ("name", "language", "english_name"),
    [
        ("fleurs-fr-000.ogg", "fr", "French"),
        ("jfk.flac", "en", "English"),
        ("fleurs-de-000.ogg", "de", "German"),
    ],
)
def test_detects_the_spoken_language_with_four_candidates(
    client, tmp_audio_dir, name, language, english_name
):
    response = detect(client, clip(name).path)
    assert response.status_code == 200
    body = response.json()
    assert (body["language"], body["name"]) == (language, english_name)
    assert body["probability"] > 0.5
    candidates = body["candidates"]
    assert len(candidates) == 4
    codes = [c["language"] for c in candidates]
    assert language not in codes
    assert len(set(codes)) == 4
    probabilities = [body["probability"], *(c["probability"] for c in candidates)]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 1.0001
    assert all(c["name"] and c["name"][0].isupper() for c in candidates)
    assert list(tmp_audio_dir.iterdir()) == []  # the upload's temp dir is gone


def test_only_the_first_30_seconds_count(client, tmp_path):
    """33 s of English, then 43 s of French: mostly French, but English in the first 30 s."""
    english = [clip("jfk.flac"), clip("fleurs-en-000.ogg"), clip("fleurs-en-002.ogg")]
    french = [clip("fleurs-fr-001.ogg"), clip("fleurs-fr-000.ogg"), clip("fleurs-fr-003.ogg")]
    recording = join([*english, *french], tmp_path / "en-then-fr.flac", gap_s=0.2)
    english_seconds = sum(c.duration for c in english)
    assert english_seconds > 30
    assert recording.duration - english_seconds > english_seconds
    assert detect(client, recording.path).json()["language"] == "en"
    assert detect(client, FRENCH.path).json()["language"] == "fr"


def test_bad_uploads_get_clear_errors(client, tmp_audio_dir):
    empty = client.post("/detect-language", files={"file": ("a.webm", b"")})
    assert empty.status_code == 400
    assert empty.json()["error"]["type"] == "empty_file"
    text = client.post("/detect-language", files={"file": ("a.webm", b"hello " * 100)})
    assert text.status_code == 415
    assert "webm/opus" in text.json()["error"]["message"]
    missing = client.post("/detect-language")
    assert missing.status_code == 422
    assert "'file' is required" in missing.json()["error"]["message"]
    # A field the route does not take is named first (issue 20): language is what it finds.
    unknown = client.post("/detect-language", data={"language": "fr"})
    assert unknown.status_code == 400
    assert "'language'" in unknown.json()["error"]["message"]
    assert list(tmp_audio_dir.iterdir()) == []


def test_audio_over_the_duration_limit_is_refused(make_settings):
    with TestClient(create_app(make_settings(max_audio_seconds=5)), raise_server_exceptions=False) as client:
        response = detect(client, FRENCH.path)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "audio_too_long"
