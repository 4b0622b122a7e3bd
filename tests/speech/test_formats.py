"""Every accepted container and codec, encoded from a real recording by the real FFmpeg."""

import subprocess

import pytest

from chatserver.speech.audio import ffmpeg_executable
from tests.support.corpus import clip, wer

JFK = clip("jfk.flac")

FORMATS = {
    "webm-opus": ("webm", ["-c:a", "libopus", "-b:a", "24k", "-f", "webm"]),
    "ogg-opus": ("ogg", ["-c:a", "libopus", "-b:a", "24k", "-f", "ogg"]),
    "ogg-vorbis": ("ogg", ["-c:a", "libvorbis", "-f", "ogg"]),
    # An m4a with its index at the end, as phones write it, needs a seekable input.
    "m4a-aac": ("m4a", ["-c:a", "aac", "-b:a", "64k", "-f", "ipod"]),
    "aac-adts": ("aac", ["-c:a", "aac", "-b:a", "64k", "-f", "adts"]),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"]),
    "wav": ("wav", ["-c:a", "pcm_s16le", "-f", "wav"]),
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("formats")
    result = {"flac": JFK.path.read_bytes()}
    for name, (extension, args) in FORMATS.items():
        target = folder / f"jfk-{name}.{extension}"
        subprocess.run(
            [
                ffmpeg_executable(None),
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                str(JFK.path),
                *args,
                str(target),
            ],
            check=True,
            timeout=60,
        )
        result[name] = target.read_bytes()
    return result


@pytest.mark.parametrize("name", ["flac", *FORMATS])
def test_accepted_format(client, encoded, name, tmp_audio_dir):
    # application/octet-stream on purpose: the container is probed, not trusted from the header.
    response = client.post(
        "/transcribe",
        files={"file": (f"upload-{name}", encoded[name], "application/octet-stream")},
        data={"language": "en"},
    )
    assert response.status_code == 200, response.text
    assert wer(JFK.reference, response.json()["transcript"]) <= 0.05
    assert list(tmp_audio_dir.iterdir()) == []
