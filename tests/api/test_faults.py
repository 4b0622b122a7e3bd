"""Faults: FFmpeg hanging or killed, the engine failing, /tmp full, S3 gone mid-job, clients vanishing.

Real parts first: a real uvicorn server on 127.0.0.1, the real FFmpeg binary, a real
filesystem that really fills up (a small tmpfs, mounted here since the suite runs as root),
a real S3 API over HTTP (moto's server). Where something stands in, the test says so.

Every test ends by checking that the server is whole again: nothing left on its temp
filesystem (not even an unlinked file still open), no FFmpeg left running, no slot held, and
the next request is transcribed.
"""

import contextlib
import errno
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import psutil
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from chatserver.api.app import create_app
from chatserver.core.settings import Settings
from chatserver.jobs.documents import CompletedJob, FailedJob
from chatserver.jobs.runner import JobRunner
from chatserver.speech.engines import Engine, TranscribeOptions
from chatserver.speech.engines.base import ProgressCallback
from chatserver.speech.service import TranscriptionService
from chatserver.speech.transcript import Transcript
from tests.support.corpus import clip, normalise, wer
from tests.support.engines import EngineWrapper
from tests.support.s3 import MotoServer, fake_aws_env, put_upload, read_result
from tests.support.servers import Server, uvicorn_server

REAL_FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
JFK = clip("jfk.flac")  # 1.15 MB: over Starlette's 1 MB in-memory limit, so it is spooled to disk
ONE_TWO_THREE = clip("sr_english.wav")  # 242 kB: kept in memory by Starlette
# Whisper writes these three words as digits or as words, depending on decoding.
ONE_TWO_THREE_TEXTS = {"one two three", "1 2 3"}
FFMPEG_TIMEOUT_S = 3
TMPFS_SIZE = "32m"


# --- the live server --------------------------------------------------------------------------
def fifo_ffmpeg(directory: Path) -> tuple[Path, Path]:
    """The real FFmpeg behind a switch: while the FIFO exists, FFmpeg reads it instead of the upload.

    Nobody writes to the FIFO, so the real binary, run with the service's own arguments,
    blocks opening its input, as FFmpeg does on a stalled source. ``exec`` keeps it the
    process the service started, so the service's time limit and a kill land on FFmpeg itself.
    """
    trap = directory / "ffmpeg-input.fifo"
    script = directory / "ffmpeg"
    script.write_text(
        f"""#!/bin/sh
if [ -p "{trap}" ]; then
  for arg do
    shift
    case "$arg" in file:*) arg="file:{trap}" ;; esac
    set -- "$@" "$arg"
  done
fi
exec "{REAL_FFMPEG}" "$@"
"""
    )
    script.chmod(0o755)
    return script, trap


@contextlib.contextmanager
def small_filesystem(directory: Path) -> Iterator[bool]:
    """A tmpfs of TMPFS_SIZE at ``directory``; yields False where mounting is not allowed."""
    directory.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(directory)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(directory)], check=False)


@dataclass
class Live:
    server: Server
    process: psutil.Process
    tmp_root: Path  # TMPDIR and CHATSERVER_TMP_DIR both live on it, as /tmp holds both in Lambda
    on_tmpfs: bool
    trap: Path  # create this FIFO to make FFmpeg block

    @property
    def url(self) -> str:
        return self.server.url

    def used_bytes(self) -> int:
        """Space in use for temp files, counting unlinked files still open (Starlette's spool)."""
        if self.on_tmpfs:
            stats = os.statvfs(self.tmp_root)
            return (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        named = sum(p.stat().st_size for p in self.tmp_root.rglob("*") if p.is_file())
        # Starlette's spool is unlinked as soon as it is made: find it among the open descriptors.
        opened = 0
        fds = Path(f"/proc/{self.process.pid}/fd")
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(str(self.tmp_root)):
                    opened += fd.stat().st_size
        return named + opened

    def ffmpeg_children(self) -> list[psutil.Process]:
        found = []
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.exe() == REAL_FFMPEG and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
        return found

    def admitted(self) -> int:
        return httpx.get(f"{self.url}/health", timeout=10).json()["admitted"]

    def wait_until_idle(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.admitted() and time.monotonic() < deadline:
            time.sleep(0.1)

    def assert_whole(self) -> None:
        """Nothing left behind, and the next request (one slot, no waiting line) is served."""
        deadline = time.monotonic() + 10
        while self.used_bytes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.used_bytes() == 0, sorted(self.tmp_root.rglob("*"))
        assert sorted(p.name for p in self.tmp_root.iterdir()) == ["audio", "spool"]
        assert all(not any((self.tmp_root / d).iterdir()) for d in ("audio", "spool"))
        assert self.ffmpeg_children() == []
        assert self.admitted() == 0
        response = post(self, ONE_TWO_THREE)
        assert response.status_code == 200, response.text
        assert normalise(response.json()["transcript"]) in ONE_TWO_THREE_TEXTS


def post(live: Live, audio: Any, timeout_s: float = 120) -> httpx.Response:
    return httpx.post(
        f"{live.url}/transcribe",
        files={"file": (audio.path.name, audio.path.read_bytes())},
        timeout=timeout_s,
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("faults")
    ffmpeg, trap = fifo_ffmpeg(base)
    with small_filesystem(base / "tmpfs") as on_tmpfs:
        root = base / "tmpfs"
        (root / "audio").mkdir()
        (root / "spool").mkdir()
        env = {
            "CHATSERVER_FFMPEG_PATH": str(ffmpeg),
            "CHATSERVER_FFMPEG_TIMEOUT_S": str(FFMPEG_TIMEOUT_S),
            # One slot and no waiting line: a slot that leaked would turn the next request into a 503.
            "CHATSERVER_MAX_CONCURRENT_JOBS": "1",
            "CHATSERVER_MAX_QUEUED_JOBS": "0",
            "CHATSERVER_TMP_DIR": str(root / "audio"),
            "TMPDIR": str(root / "spool"),
            "CHATSERVER_BEAM_SIZE": "1",
        }
        with uvicorn_server(env, base / "uvicorn.log") as server:
            live = Live(server, psutil.Process(server.process.pid), root, on_tmpfs, trap)
            # Python picks its temp dir on first use, and skips TMPDIR if it cannot write there
            # then: let Starlette spool one upload (over 1 MB) while the tmpfs has room.
            assert post(live, JFK).status_code == 200
            try:
                yield live
            finally:
                trap.unlink(missing_ok=True)
        log = (base / "uvicorn.log").read_text()
        # Every fault here is an expected one, logged as one line: a traceback would be a bug.
        assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def stalled_ffmpeg(live: Live) -> Iterator[Path]:
    os.mkfifo(live.trap)
    try:
        yield live.trap
    finally:
        live.trap.unlink(missing_ok=True)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


# --- FFmpeg ------------------------------------------------------------------------------------
def test_ffmpeg_that_hangs_is_stopped_by_the_time_limit(live: Live, stalled_ffmpeg: Path) -> None:
    """The real FFmpeg blocks opening a FIFO nobody writes to: only the time limit can end it.

    The one stand-in is the wrapper script (``fifo_ffmpeg``) that points FFmpeg at the FIFO; the
    service's command line, its time limit and the process it kills are real.
    """
    started = time.monotonic()
    response = post(live, ONE_TWO_THREE)
    elapsed = time.monotonic() - started

    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["type"] == "decode_timeout"
    assert f"longer than the {FFMPEG_TIMEOUT_S} s limit" in error["message"], error
    assert FFMPEG_TIMEOUT_S <= elapsed < FFMPEG_TIMEOUT_S + 10, elapsed
    assert live.ffmpeg_children() == []  # killed and reaped, not left blocking
    stalled_ffmpeg.unlink()
    live.assert_whole()


def test_ffmpeg_killed_mid_decode_is_a_503_and_the_next_request_works(
    live: Live, stalled_ffmpeg: Path
) -> None:
    """The real FFmpeg, blocked on the FIFO, is SIGKILLed from outside as the OOM killer would.

    The wrapper script (``fifo_ffmpeg``) is the one stand-in: it holds FFmpeg still to be killed.
    """
    answer: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answer.append(post(live, ONE_TWO_THREE)))
    sender.start()
    deadline = time.monotonic() + 30
    while not (running := live.ffmpeg_children()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(running) == 1, "FFmpeg never started"
    running[0].send_signal(signal.SIGKILL)
    sender.join(60)

    response = answer[0]
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    error = error_of(response)
    assert error["type"] == "decoder_failed"
    assert "signal 9" in error["message"], error
    stalled_ffmpeg.unlink()
    live.assert_whole()


# --- the engine --------------------------------------------------------------------------------
class FailsOnce(EngineWrapper):
    """Stand-in for a bug inside the engine: the real engine, except that its first call raises."""

    def __init__(self, engine: Engine, error: Exception) -> None:
        super().__init__(engine)
        self.error: Exception | None = error

    def transcribe(
        self,
        audio: Any,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: Any = None,
    ) -> Transcript:
        error, self.error = self.error, None
        if error is not None:
            raise error
        return self.engine.transcribe(audio, options, progress, on_segment)


def test_unexpected_engine_error_is_a_500_with_request_id_and_no_trace(
    settings: Settings, service: TranscriptionService, tmp_audio_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "segment cache corrupted at /opt/model/internal.bin"
    failing = TranscriptionService(settings, FailsOnce(service.engine, RuntimeError(secret)))
    with TestClient(create_app(settings, failing), raise_server_exceptions=False) as client:
        files = {"file": (ONE_TWO_THREE.path.name, ONE_TWO_THREE.path.read_bytes())}
        response = client.post("/transcribe", files=files)

        assert response.status_code == 500
        error = error_of(response)
        assert error["type"] == "internal_error"
        assert re.fullmatch(r"[0-9a-f]{32}", error["request_id"]), error
        assert "request_id" in error["message"], error
        for leak in ("Traceback", "RuntimeError", secret, "/opt/model", 'File "'):
            assert leak not in response.text, response.text
        # The trace is in the server's log, under the request id the client was given.
        logged = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
        assert any(error["request_id"] in r.getMessage() for r in logged), caplog.text
        assert secret in caplog.text

        again = client.post("/transcribe", files=files)
        assert again.status_code == 200, again.text
        assert normalise(again.json()["transcript"]) in ONE_TWO_THREE_TEXTS
        assert client.get("/health").json()["admitted"] == 0
    assert list(tmp_audio_dir.iterdir()) == []


# --- /tmp full ---------------------------------------------------------------------------------
def fill(directory: Path) -> Path:
    """Write into ``directory`` until its filesystem refuses with ENOSPC."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        # Big writes first, then small ones to take the last pages a big write could not.
        for size in (1 << 20, 4096):
            block = b"\0" * size
            with pytest.raises(OSError, match="No space left") as full:  # noqa: PT012 - ends only by raising
                while True:
                    out.write(block)
            assert full.value.errno == errno.ENOSPC, full.value
    return filler


def test_full_tmp_is_a_507_with_retry_after(
    live: Live, settings: Settings, service: TranscriptionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real full filesystem: the server's /tmp (TMPDIR and CHATSERVER_TMP_DIR) is a small tmpfs.

    Both writers are covered: our own copy of an upload (a 242 kB WAV) and Starlette spooling a
    1.15 MB upload while it parses the form. Where mounting is not allowed, a stand-in makes
    the copy raise ENOSPC in-process instead, and only the first writer is covered.
    """
    if not live.on_tmpfs:
        _full_tmp_stand_in(settings, service, monkeypatch)
        return
    filler = fill(live.tmp_root)
    try:
        assert os.statvfs(live.tmp_root).f_bavail == 0
        for audio in (ONE_TWO_THREE, JFK):
            response = post(live, audio)
            assert response.status_code == 507, (audio.path.name, response.text)
            assert int(response.headers["retry-after"]) > 0
            error = error_of(response)
            assert error["type"] == "insufficient_storage"
            assert "no temporary disk space" in error["message"]
        assert not any((live.tmp_root / "audio").iterdir())
    finally:
        filler.unlink()
    live.assert_whole()
    response = post(live, JFK)  # the spooled path works again too
    assert response.status_code == 200, response.text
    assert wer(JFK.reference, response.json()["transcript"]) < 0.1


def _full_tmp_stand_in(
    settings: Settings, service: TranscriptionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("chatserver.speech.audio.shutil.copyfileobj", no_space)
    with TestClient(create_app(settings, service), raise_server_exceptions=False) as client:
        response = client.post("/transcribe", files={"file": ("a.wav", ONE_TWO_THREE.path.read_bytes())})
    assert response.status_code == 507, response.text
    assert int(response.headers["retry-after"]) > 0
    assert error_of(response)["type"] == "insufficient_storage"


# --- clients that go away -----------------------------------------------------------------------
def _multipart_head(port: int, declared_length: int) -> tuple[bytes, bytes, bytes]:
    boundary = "chatserver-fault-boundary"
    head = (
        f"POST /transcribe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {declared_length}\r\n\r\n"
    ).encode()
    opening = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="jfk.flac"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    closing = f"\r\n--{boundary}--\r\n".encode()
    return head, opening, closing


def _wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_client_disconnecting_mid_upload_leaves_nothing(live: Live) -> None:
    """A real socket sends 1.15 MB of a declared 3 MB body, then closes."""
    audio = JFK.path.read_bytes()
    head, opening, _ = _multipart_head(live.server.port, 3_000_000)
    with socket.create_connection(("127.0.0.1", live.server.port), timeout=30) as sock:
        sock.sendall(head + opening + audio)
        # Starlette has spooled the part to the temp filesystem: the test reaches that path.
        _wait_for(lambda: live.used_bytes() > 1_000_000, 30, "the upload to be spooled to disk")
    live.assert_whole()


def test_client_disconnecting_while_its_audio_is_transcribed_releases_the_slot(live: Live) -> None:
    """The whole upload arrives, the slot is taken, then the client closes before the answer."""
    audio = JFK.path.read_bytes()
    _, opening, closing = _multipart_head(live.server.port, 0)
    body = opening + audio + closing
    head, _, _ = _multipart_head(live.server.port, len(body))
    with socket.create_connection(("127.0.0.1", live.server.port), timeout=30) as sock:
        sock.sendall(head + body)
        _wait_for(lambda: live.admitted() == 1, 30, "the request to take the slot")
    live.wait_until_idle()
    live.assert_whole()


# --- S3 ------------------------------------------------------------------------------------------
BUCKET = "chatserver-faults"


class StopsS3First(EngineWrapper):
    """The real engine, but S3 goes away (the moto server is stopped) as transcription starts.

    By then the runner has downloaded the upload and written its ``processing`` claim; what is
    left is the final result write, which must fail loudly rather than half-succeed.
    """

    def __init__(self, engine: Engine, moto: ThreadedMotoServer) -> None:
        super().__init__(engine)
        self.moto: ThreadedMotoServer | None = moto

    def transcribe(
        self,
        audio: Any,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: Any = None,
    ) -> Transcript:
        moto, self.moto = self.moto, None
        if moto is not None:
            moto.stop()
        return self.engine.transcribe(audio, options, progress, on_segment)


@pytest.mark.s3server
def test_s3_going_away_mid_job_raises_and_writes_no_result(
    make_settings,
    service: TranscriptionService,
    tmp_audio_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
) -> None:
    """A real S3 API over HTTP (moto's server) that stops answering after the download.

    tests/jobs/test_jobs.py covers S3 refusing the download and refusing the final write; here the
    server is really gone: connections are refused, as in a network partition.
    """
    fake_aws_env(monkeypatch)
    settings = make_settings(
        bucket=BUCKET,
        s3_endpoint_url=moto.endpoint,
        s3_region="us-east-1",
        s3_max_attempts=2,
        s3_connect_timeout_s=1,
        s3_read_timeout_s=5,
    )
    engine = StopsS3First(service.engine, moto.server)
    runner = JobRunner(TranscriptionService(settings, engine), settings)
    restarted: ThreadedMotoServer | None = None
    try:
        runner.s3.create_bucket(Bucket=BUCKET)
        record = put_upload(runner.s3, BUCKET, "uploads/voice note.wav", ONE_TWO_THREE.path.read_bytes())

        started = time.monotonic()
        with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever botocore raises, it must raise
            runner.handle(record)
        assert engine.moto is None, "the engine never ran: S3 failed before the download"
        assert "connect" in str(raised.value).lower(), raised.value
        assert time.monotonic() - started < 60  # bounded by the client's timeouts and retries
        assert list(tmp_audio_dir.iterdir()) == []

        # S3 comes back (same port, same state): the job left its claim and nothing else.
        restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=moto.port, verbose=False)
        restarted.start()
        result = read_result(runner.s3, BUCKET, "transcripts/voice note.wav.json")
        assert result is None or result.status == "processing", result
        assert not isinstance(result, CompletedJob | FailedJob)

        # Lambda's retry of the event completes the job: nothing was lost.
        runner.handle(record)
        done = read_result(runner.s3, BUCKET, "transcripts/voice note.wav.json")
        assert isinstance(done, CompletedJob), done
        assert normalise(done.text) in ONE_TWO_THREE_TEXTS
    finally:
        if restarted is not None:
            restarted.stop()  # the first server: the moto fixture stops it (again, harmlessly)
    assert list(tmp_audio_dir.iterdir()) == []
