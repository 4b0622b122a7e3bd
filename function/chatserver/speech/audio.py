"""Audio decoding (any accepted container to 16 kHz mono float32) and FLAC encoding, with the FFmpeg binary.

Samples are decoded as Whisper's reference does (openai-whisper's ``load_audio``): FFmpeg
resamples to 16 kHz mono signed 16-bit PCM, scaled to [-1, 1) by 1/32768. That is what the
model was trained on; FFmpeg's float output skips the 16-bit rounding and changes the words
on some clips (README, "How a recording is cut and decoded").
"""

import errno
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..core.errors import (
    AudioTooLong,
    DecoderCrashed,
    DecodeTimeout,
    EmptyAudio,
    InsufficientStorage,
    UndecodableAudio,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# Demuxers FFmpeg may pick for an upload. Anything else (playlists, concat lists, image
# sequences) could make FFmpeg open other files, so it is refused before it is parsed.
_DEMUXERS = "matroska,webm,ogg,mov,mp4,m4a,3gp,mp3,wav,flac,aac"


def ffmpeg_executable(configured: Path | None) -> str:
    if configured is not None:
        return str(configured)
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@contextmanager
def temporary_audio_path(tmp_dir: Path | None) -> Iterator[Path]:
    """A fresh path in a private directory that is removed on every exit, errors included."""
    with tempfile.TemporaryDirectory(prefix="chatserver-", dir=tmp_dir) as directory:
        yield Path(directory) / "audio"


def save_stream(source: BinaryIO, target: Path) -> int:
    """Copy an upload to disk, since some containers (m4a) need a seekable input."""
    try:
        with target.open("wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
            size = out.tell()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage() from exc
        raise
    if size == 0:
        raise EmptyAudio()
    return size


def decode(path: Path, *, ffmpeg: str, timeout_s: float, max_seconds: float) -> np.ndarray:
    """Decode the first audio stream of ``path``; never more than ``max_seconds`` (plus a margin)."""
    if path.stat().st_size == 0:
        raise EmptyAudio()
    command = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel", "error",
        "-protocol_whitelist", "file",
        "-format_whitelist", _DEMUXERS,
        "-i", f"file:{path}",
        "-map", "0:a:0",
        "-ac", "1",
        "-ar", str(SAMPLE_RATE),
        "-f", "s16le",
        # Decoding one second past the limit is enough to know the audio is too long.
        "-t", f"{max_seconds + 1:.3f}",
        "pipe:1",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeTimeout(timeout_s) from exc
    if result.returncode < 0:
        raise DecoderCrashed(-result.returncode)
    if result.returncode != 0:
        raise UndecodableAudio(_ffmpeg_reason(result.stderr, path))
    pcm = np.frombuffer(result.stdout, dtype=np.int16)
    del result  # the PCM bytes live on in ``pcm`` until they are converted, then go
    if pcm.size == 0:
        raise UndecodableAudio("it contains no audio samples")
    if pcm.size > max_seconds * SAMPLE_RATE:
        raise AudioTooLong(max_seconds)
    samples = pcm.astype(np.float32)
    samples /= 32768.0  # in place: one float copy of the audio in memory, not two
    return samples


def _ffmpeg_reason(stderr: bytes, path: Path) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    reason = lines[-1] if lines else "unknown decoder error"
    # The temp path means nothing to the caller and says something about the server.
    return reason.replace(f"file:{path}", "input").replace(str(path), "input")[:300]


def write_flac(samples: np.ndarray, target: Path, *, ffmpeg: str, timeout_s: float) -> int:
    """16 kHz mono 16-bit FLAC: lossless for the s16 that Whisper's decoding is based on. Returns bytes."""
    command = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel", "error",
        "-f", "f32le",
        "-ar", str(SAMPLE_RATE),
        "-ac", "1",
        "-i", "pipe:0",
        "-c:a", "flac",
        "-sample_fmt", "s16",
        "-y",
        f"file:{target}",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command,
            input=np.ascontiguousarray(samples, dtype=np.float32).tobytes(),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DecodeTimeout(timeout_s) from exc
    if result.returncode < 0:
        raise DecoderCrashed(-result.returncode)
    if result.returncode != 0:
        # Our own float32 samples: a failure here is the machine's (disk, memory), so a retry may work.
        raise RuntimeError(
            f"FFmpeg could not encode a chunk: {result.stderr.decode(errors='replace')[-300:]}"
        )
    return target.stat().st_size
