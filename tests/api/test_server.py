"""A real uvicorn server: parallel load beyond capacity, and uploads over the size limit."""

import re
import select
import socket
import threading
import time

import httpx

from tests.support.corpus import clip
from tests.support.servers import uvicorn_server

JFK = clip("jfk.flac")


def test_parallel_requests_beyond_capacity(tmp_path, tmp_audio_dir):
    env = {
        "CHATSERVER_MAX_CONCURRENT_JOBS": "1",
        "CHATSERVER_MAX_QUEUED_JOBS": "1",
        "CHATSERVER_TMP_DIR": str(tmp_audio_dir),
    }
    with uvicorn_server(env, tmp_path / "uvicorn.log") as server:
        results: list[tuple[int, dict, float]] = []
        health: list[tuple[float, int]] = []
        done = threading.Event()

        def transcribe() -> None:
            started = time.perf_counter()
            response = httpx.post(
                f"{server.url}/transcribe", files={"file": ("jfk.flac", JFK.path.read_bytes())}, timeout=120
            )
            results.append((response.status_code, dict(response.headers), time.perf_counter() - started))

        def poll_health() -> None:
            while not done.is_set():
                started = time.perf_counter()
                response = httpx.get(f"{server.url}/health", timeout=30)
                health.append((time.perf_counter() - started, response.json()["admitted"]))
                time.sleep(0.05)

        poller = threading.Thread(target=poll_health)
        poller.start()
        workers = [threading.Thread(target=transcribe) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(180)
        done.set()
        poller.join(30)

        statuses = [status for status, _, _ in results]
        assert len(statuses) == 6
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 1
        assert statuses.count(503) >= 1, "6 requests against 1 slot + 1 waiting must overflow"
        for status, headers, _ in results:
            if status == 503:
                assert int(headers["retry-after"]) > 0
        slowest_ok = max(elapsed for status, _, elapsed in results if status == 200)
        fastest_busy = min(elapsed for status, _, elapsed in results if status == 503)
        assert fastest_busy < slowest_ok / 2, "a 503 must come fast, not after waiting for a slot"

        busy_polls = [elapsed for elapsed, admitted in health if admitted > 0]
        assert busy_polls, "/health never answered while a transcription was running"
        assert max(busy_polls) < slowest_ok / 4, "/health was held up by transcription"
        assert httpx.get(f"{server.url}/health", timeout=5).json()["admitted"] == 0
    assert list(tmp_audio_dir.iterdir()) == []


def _read_response(sock: socket.socket) -> bytes:
    """Head and body of one response: they may arrive in separate segments."""
    data = b""
    while True:
        head, separator, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        if separator and length and len(body) >= int(length.group(1)):
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def _raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    return sock


def test_oversize_upload_is_refused_while_it_streams(tmp_path, tmp_audio_dir):
    """A chunked upload has no Content-Length: the limit must fire on the bytes as they arrive."""
    limit = 1_000_000
    env = {"CHATSERVER_MAX_UPLOAD_BYTES": str(limit), "CHATSERVER_TMP_DIR": str(tmp_audio_dir)}
    with uvicorn_server(env, tmp_path / "uvicorn.log") as server:
        declared = _raw_request(
            server.port,
            b"POST /transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 30000000\r\n\r\n",
        )
        assert declared.recv(4096).startswith(b"HTTP/1.1 413")
        declared.close()

        sock = _raw_request(
            server.port,
            b"POST /transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
        )
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.webm"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"\x1a" * 65536
        sent, planned = 0, 50 * limit
        while sent < planned:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        response = _read_response(sock)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b"1000000 byte limit" in response
        # Loopback socket buffers hold a few MB that the server never read; reading the whole
        # body before refusing would have taken all 50 MB.
        assert sent < planned / 4, f"{sent} bytes went out before the refusal"
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    assert list(tmp_audio_dir.iterdir()) == []


def test_a_tmp_dir_that_does_not_exist_yet_is_created_at_start(tmp_path):
    """It gave a 500 on every upload: tempfile's directory was missing."""
    missing = tmp_path / "not" / "yet"
    big = b"\0" * (2 * 1024 * 1024)  # past Starlette's 1 MB spool: a file in CHATSERVER_TMP_DIR
    with uvicorn_server({"CHATSERVER_TMP_DIR": str(missing)}, tmp_path / "uvicorn.log") as server:
        assert missing.is_dir()
        note = httpx.post(
            f"{server.url}/transcribe", files={"file": ("jfk.flac", JFK.path.read_bytes())}, timeout=120
        )
        noise = httpx.post(f"{server.url}/transcribe", files={"file": ("zeros.wav", big)}, timeout=120)
    assert note.status_code == 200, note.text
    assert "ask not" in note.json()["transcript"].lower()
    assert noise.status_code == 415, noise.text  # not audio: the client's error, not a 500
    assert list(missing.iterdir()) == []  # nothing outlives its request


def test_a_tmp_dir_that_cannot_be_used_is_refused_at_start(tmp_path):
    import pytest
    from pydantic import ValidationError

    from chatserver.core.settings import Settings

    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    with pytest.raises(ValidationError, match=r"CHATSERVER_TMP_DIR .*a-file.* cannot be created"):
        Settings(tmp_dir=taken / "tmp")
    with pytest.raises(ValidationError, match=r"CHATSERVER_TMP_DIR .*a-file.* cannot be created"):
        Settings(tmp_dir=taken)
