"""Bad input: the right status, a message naming what was wrong and what is accepted, no temp file left."""

import pytest

from tests.support.corpus import clip
from tests.support.http import assert_error

JFK = clip("jfk.flac")


def post(client, data=None, files=None):
    return client.post("/transcribe", data=data or {}, files=files)


# Every test here ends with the service's temp dir empty (conftest.no_temp_file_left).
pytestmark = pytest.mark.usefixtures("no_temp_file_left")


def test_missing_file_is_422(client):
    response = post(client, data={"language": "fr"})
    assert_error(response, 422, "invalid_request", "'file' is required", "webm")


def test_empty_file_is_400(client):
    response = post(client, files={"file": ("empty.webm", b"", "audio/webm")})
    assert_error(response, 400, "empty_file", "empty", "webm")


@pytest.mark.parametrize("language", ["klingon", "xx", "fra"])
def test_unknown_language_is_400(client, language):
    response = post(client, data={"language": language}, files={"file": ("a.flac", JFK.path.read_bytes())})
    assert_error(response, 400, "unknown_language", repr(language), "'fr'")


def test_text_is_not_audio_415(client):
    response = post(client, files={"file": ("notes.txt", b"this is not audio at all\n" * 50, "text/plain")})
    assert_error(response, 415, "unsupported_media", "could not be decoded", "webm", "mp3")


def test_truncated_audio_is_415(client):
    truncated = JFK.path.read_bytes()[:300]
    response = post(client, files={"file": ("cut.flac", truncated, "audio/flac")})
    assert_error(response, 415, "unsupported_media", "Accepted formats")


def test_playlist_that_points_at_local_files_is_refused(client):
    """FFmpeg must not follow an upload to other files: HLS and concat demuxers are not allowed."""
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n"
    response = post(client, files={"file": ("list.m3u8", playlist, "application/vnd.apple.mpegurl")})
    assert_error(response, 415, "unsupported_media")
    concat = b"ffconcat version 1.0\nfile '/work/shared/audio/en/jfk.flac'\n"
    response = post(client, files={"file": ("list.txt", concat, "text/plain")})
    assert_error(response, 415, "unsupported_media")


@pytest.fixture
def small_limits_client(make_settings):
    from fastapi.testclient import TestClient

    from chatserver.api.app import create_app

    settings = make_settings(max_upload_bytes=300_000, max_audio_seconds=5)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_body_over_the_size_limit_is_413(small_limits_client):
    body = JFK.path.read_bytes()
    assert len(body) > 300_000
    response = post(small_limits_client, files={"file": ("jfk.flac", body, "audio/flac")})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "file_too_large"
    assert "300000 byte limit" in response.json()["error"]["message"]


def test_audio_over_the_duration_limit_is_413(small_limits_client):
    short = clip("sr_english.wav").path.read_bytes()  # 2.7 s in 242 kB: under both limits
    assert post(small_limits_client, files={"file": ("ok.wav", short)}).status_code == 200
    long_clip = clip("fleurs-en-003.ogg")  # 5.8 s, small file, over the 5 s limit
    assert long_clip.path.stat().st_size < 300_000
    response = post(small_limits_client, files={"file": ("long.ogg", long_clip.path.read_bytes())})
    assert_error(response, 413, "audio_too_long", "5 s limit", "POST /jobs")


def test_server_keeps_serving_after_errors(client):
    assert post(client, files={"file": ("e.webm", b"")}).status_code == 400
    assert post(client, files={"file": ("x.bin", b"\x00" * 1000)}).status_code == 415
    response = post(client, files={"file": ("ok.wav", clip("sr_english.wav").path.read_bytes())})
    assert response.status_code == 200
