"""The fuzz and abuse suite (issue 10): every hostile case found so far, kept from coming back.

Two halves. In process (the app through Starlette's test client, with the real model,
FFmpeg and recordings): the contract at its edges. Against a real server (`python -m
chatserver` on 127.0.0.1) with raw sockets: read deadlines, the cap on uploads being
received, clients that leave while waiting or running. Deadlines are set short here (1.5 s
for headers, 3 s for bodies) so that the suite stays fast; counts are bounded.
"""

import json
import logging
import re
import select
import socket
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatserver.api.app import create_app
from chatserver.api.running import _source
from chatserver.core.errors import ChatServerError
from chatserver.speech.audio import decode, ffmpeg_executable
from chatserver.speech.languages import to_language_code
from tests.support.corpus import clip
from tests.support.http import assert_error
from tests.support.servers import REPO, uvicorn_server

JFK = clip("jfk.flac")
LONG = clip("long-fr-fleurs-000-004.webm")


# Every test here ends with the service's temp dir empty (conftest.no_temp_file_left).
pytestmark = pytest.mark.usefixtures("no_temp_file_left")


# --- in process: the contract at its edges ---------------------------------------------------


def test_a_megabyte_language_is_neither_echoed_nor_logged_whole(client, caplog):
    value = "x" * 1_000_000
    with caplog.at_level(logging.INFO):
        response = client.post("/transcribe", data={"language": value}, files={"file": ("a.flac", b"fLaC")})
    error = assert_error(response, 400, "unknown_language", "(1000000 characters)", "'fr-FR'")
    assert len(response.content) < 1000, len(response.content)
    assert len(error["message"]) < 400
    assert caplog.records, "the refusal was not logged"
    assert max(len(record.getMessage()) for record in caplog.records) < 1000


def test_413_from_content_length_is_the_documented_body(make_settings):
    with TestClient(create_app(make_settings(max_upload_bytes=1000))) as client:
        response = client.post("/transcribe", content=b"x" * 1001, headers={"content-type": "audio/flac"})
        assert_error(response, 413, "file_too_large", "1000 byte limit")
        assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    ("content_type", "body", "detail"),
    [
        ("multipart/form-data", b"--b\r\n", "Missing boundary"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "name",
        ),
        ("multipart/form-data; boundary=b", b"\x00garbage--b\r\n\r\n\xff" * 20, "Invalid multipart"),
    ],
)
def test_malformed_multipart_is_a_documented_400(client, content_type, body, detail):
    response = client.post("/transcribe", content=body, headers={"content-type": content_type})
    assert_error(response, 400, "malformed_body", detail, "multipart/form-data", "'file'")


def test_a_second_file_part_is_a_422_that_says_so(client):
    audio = JFK.path.read_bytes()
    files = [("file", ("a.flac", audio)), ("file", ("b.flac", audio))]
    response = client.post("/transcribe", files=files)
    assert_error(response, 422, "invalid_request", "'file'", "2 times")


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("fr-FR", "fr"),
        ("pt-BR", "pt"),
        ("zh-Hant", "zh"),
        ("ZH-hant-TW", "zh"),
        ("en_us", "en"),
        ("yue-HK", "yue"),
    ],
)
def test_language_accepts_bcp47_tags_by_primary_subtag(tag, code):
    assert to_language_code(tag) == code


@pytest.mark.parametrize("tag", ["fr-", "xx-FR", "-FR", "fr--FR", "français-FR"])
def test_malformed_or_unknown_tags_are_refused(tag):
    with pytest.raises(ChatServerError, match="Unknown language"):
        to_language_code(tag)


def test_browser_language_and_upper_case_format_transcribe(client):
    """What a browser sends (navigator.language) and what people type, on the real model."""
    response = client.post(
        "/transcribe",
        data={"language": "en-US", "response_format": "JSON"},
        files={"file": ("jfk.flac", JFK.path.read_bytes())},
    )
    assert response.status_code == 200, response.text
    assert response.json()["language"] == "en"
    assert "country" in response.json()["transcript"]


def test_head_works_where_get_does(client):
    for path in ("/health", "/openapi.json"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == get.headers["content-length"]
        assert head.headers["x-request-id"]
    refused = client.head("/transcribe")  # POST only: as GET would be, without the body
    assert refused.status_code == 405
    assert refused.content == b""


def test_router_errors_are_documented_bodies(client):
    assert_error(client.get("/no/such/path"), 404, "not_found")
    assert_error(client.get("/transcribe"), 405, "method_not_allowed")


def test_every_error_type_is_in_the_readme_table():
    """Every ``type`` an error body can carry: ours, the router's, the parser's, the server's."""
    import chatserver.api.error_handlers as handlers
    import chatserver.core.errors as errors

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    types = {cls.error_type for cls in subclasses(errors.ChatServerError)} | set(
        handlers._HTTP_TYPES.values()
    )
    server = (REPO / "function" / "chatserver" / "api" / "deadlines.py").read_text()
    types |= set(re.findall(r'"type": "(\w+)"', server)) | {"internal_error"}
    readme = (REPO / "README.md").read_text().split("### Errors", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"^\| \d{3} \| `(\w+)` \|", readme, re.MULTILINE))
    assert types - listed == set(), "error types missing from the README's table"
    assert listed - types == set(), "README lists error types that no code raises"


def test_a_spooled_upload_is_read_in_place_not_copied():
    """An upload past Starlette's 1 MB spool is on disk already: FFmpeg reads that file."""
    ffmpeg = ffmpeg_executable(None)
    with tempfile.SpooledTemporaryFile(max_size=1) as spool:
        spool.write(JFK.path.read_bytes())
        spool.seek(0)
        source = _source(spool)
        assert isinstance(source, Path)
        assert source.parent == Path(f"/proc/{__import__('os').getpid()}/fd")
        in_place = decode(source, ffmpeg=ffmpeg, timeout_s=30, max_seconds=60)
    original = decode(JFK.path, ffmpeg=ffmpeg, timeout_s=30, max_seconds=60)
    assert (in_place == original).all()
    with tempfile.SpooledTemporaryFile(max_size=10_000_000) as small:
        small.write(b"in memory")
        assert _source(small) is small  # not on disk yet: the service writes it once


SHORT = clip("sr_english.wav")  # 2.7 s: a mutated body that still decodes costs about a second
_VALID = (
    b'--b\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n'
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n" + SHORT.path.read_bytes() + b"\r\n--b--\r\n"
)
# Every status /transcribe may answer a body with; a 5xx other than busy would be a bug.
_ANSWERS = {200, 400, 413, 415, 422, 503}


@st.composite
def mutated_uploads(draw) -> bytes:
    """A valid upload with a few bytes replaced, inserted or cut, near the multipart framing
    (the first 200 bytes and the last 20) as often as anywhere in the audio."""
    body = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(
            st.one_of(
                st.integers(0, 200), st.integers(len(body) - 20, len(body) - 1), st.integers(0, len(body) - 1)
            )
        )
        where = min(where, len(body) - 1)
        match draw(st.sampled_from(["replace", "insert", "cut"])):
            case "replace":
                body[where] = draw(st.integers(0, 255))
            case "insert":
                body[where:where] = draw(st.binary(min_size=1, max_size=8))
            case "cut":
                del body[where : where + draw(st.integers(1, 64))]
    return bytes(body)


# The client fixture is shared by the examples on purpose: one app, as a server would be.
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=mutated_uploads(), boundary=st.sampled_from(["b", '"b"', "b; charset=latin-1", "c", ""]))
def test_fuzzed_uploads_get_a_documented_answer(client, body, boundary):
    """Bounded: 25 mutated bodies, the same ones on every run."""
    content_type = f"multipart/form-data; boundary={boundary}" if boundary else "multipart/form-data"
    response = client.post("/transcribe", content=body, headers={"content-type": content_type})
    assert response.status_code in _ANSWERS, response.text
    if response.status_code == 200:
        assert response.json()["language"] == "en"
    else:
        assert_error(response, response.status_code, response.json()["error"]["type"])


def test_an_upload_past_the_spool_is_transcribed_without_a_copy(client, monkeypatch):
    """Over HTTP: 2 MB of WAV (the short clip, then silence) goes from the spool to FFmpeg."""
    import chatserver.speech.service as service_module

    copies = []
    real_save = service_module.save_stream
    monkeypatch.setattr(
        service_module,
        "save_stream",
        lambda source, target: copies.append(target) or real_save(source, target),
    )
    samples = decode(SHORT.path, ffmpeg=ffmpeg_executable(None), timeout_s=30, max_seconds=60)
    pcm = (samples * 32767).astype("<i2").tobytes() + bytes(2 * 16_000 * 60)
    wav = b"RIFF" + (36 + len(pcm)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    wav += (1).to_bytes(2, "little") * 2 + (16_000).to_bytes(4, "little") + (32_000).to_bytes(4, "little")
    wav += (
        (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + len(pcm).to_bytes(4, "little")
        + pcm
    )
    assert len(wav) > 1024 * 1024  # past Starlette's spool
    response = client.post("/transcribe", data={"language": "en"}, files={"file": ("long.wav", wav)})
    assert response.status_code == 200, response.text
    assert response.json()["duration"] > 60
    assert "3" in response.json()["transcript"] or "three" in response.json()["transcript"].lower()
    assert copies == [], "the spooled upload was copied before decoding"


# --- a real server, raw sockets: deadlines, the upload cap, clients that leave ----------------

HEADER_S, BODY_S = 1.5, 3.0
# Room for a loaded 2-core machine: a deadline must fire, but not to the millisecond.
SLACK_S = 3.0
UPLOAD_HEAD = (
    b"POST /transcribe HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    b"Content-Length: %d\r\n\r\n"
)
FILE_PART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.flac"\r\n\r\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("abuse")
    (base / "tmp").mkdir()
    env = {
        "CHATSERVER_HEADER_TIMEOUT_S": str(HEADER_S),
        "CHATSERVER_BODY_TIMEOUT_S": str(BODY_S),
        "CHATSERVER_MAX_RECEIVING_UPLOADS": "2",
        "CHATSERVER_MAX_CONCURRENT_JOBS": "1",
        "CHATSERVER_MAX_QUEUED_JOBS": "2",
        "CHATSERVER_TMP_DIR": str(base / "tmp"),
    }
    with uvicorn_server(env, base / "server.log") as running:
        running.tmp = base / "tmp"
        yield running
    assert list((base / "tmp").iterdir()) == []


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (from now)."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open past {limit_s} s")
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return data, time.monotonic() - started


def json_body(response: bytes) -> dict:
    return json.loads(response.partition(b"\r\n\r\n")[2])


def health_ok(server) -> float:
    """/health's answer time; the tests compare it with the deadlines they set, which a
    server blocked by hostile clients would run into."""
    started = time.monotonic()
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    return time.monotonic() - started


def test_an_idle_connection_is_closed_after_the_header_deadline(server):
    data, closed_after = read_until_closed(connect(server), HEADER_S + SLACK_S)
    assert data == b"", "an idle connection gets no answer, only the close"
    assert closed_after >= HEADER_S * 0.9


def test_slow_headers_get_a_408(server):
    sock = connect(server)
    started = time.monotonic()
    for byte in b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
        if select.select([sock], [], [], 0.1)[0]:  # a byte every 0.1 s, as slowloris does
            break  # the server answered (and will close): sending more would be reset
        sock.sendall(bytes([byte]))
    data, _ = read_until_closed(sock, HEADER_S + SLACK_S)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    error = json_body(data)["error"]
    assert error["type"] == "request_timeout"
    assert error["request_id"]
    assert time.monotonic() - started < HEADER_S + SLACK_S


@pytest.mark.parametrize("client", ["trickle", "short"])
def test_a_slow_or_short_body_gets_a_408_with_its_request_id(server, client):
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(UPLOAD_HEAD % 100_000 + FILE_PART)
    if client == "trickle":  # one byte every half second
        sock.settimeout(0.5)
        for _ in range(int((BODY_S + SLACK_S) / 0.5)):
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                sock.sendall(b"\x00")
    else:  # 100 bytes short of its Content-Length, then nothing
        sock.sendall(b"\x00" * (100_000 - len(FILE_PART) - 100))
    data, _ = read_until_closed(sock, BODY_S + SLACK_S)
    elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408"), data[:300]
    head = data.partition(b"\r\n\r\n")[0].decode()
    error = json_body(data)["error"]
    assert error["type"] == "request_timeout"
    assert f"x-request-id: {error['request_id']}" in head
    assert BODY_S * 0.9 <= elapsed < BODY_S + SLACK_S
    log = server.log.read_text()
    assert re.search(rf"\[{error['request_id']}\] chatserver.access: POST /transcribe -> 408", log), log[
        -2000:
    ]


def test_uploads_beyond_the_cap_get_an_immediate_503_and_spool_in_the_tmp_dir(server):
    stalled = []
    for _ in range(2):  # the cap: 2 uploads being received, each stalled 100 bytes short
        sock = connect(server)
        sock.sendall(UPLOAD_HEAD % 3_000_100 + FILE_PART + b"\x00" * 3_000_000)
        stalled.append(sock)
    time.sleep(0.5)
    # Past Starlette's 1 MB spool, each upload is a file in CHATSERVER_TMP_DIR (unnamed: it
    # cannot outlive its request even if the process dies).
    fds = Path(f"/proc/{server.process.pid}/fd")
    spooled = [fd for fd in fds.iterdir() if str(fd.readlink()).startswith(str(server.tmp))]
    assert len(spooled) == 2, [str(fd.readlink()) for fd in fds.iterdir()]

    started = time.monotonic()
    refused = httpx.post(
        f"{server.url}/transcribe", files={"file": ("a.flac", JFK.path.read_bytes())}, timeout=10
    )
    assert refused.status_code == 503, refused.text
    # At once: long before the stalled uploads' body deadline frees a place.
    assert time.monotonic() - started < BODY_S / 3, "the 503 must come at once"
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["type"] == "server_busy"
    assert "uploads are being received" in refused.json()["error"]["message"]
    assert health_ok(server) < HEADER_S, "/health must answer while uploads stall"

    for sock in stalled:
        data, _ = read_until_closed(sock, BODY_S + SLACK_S)
        assert data.startswith(b"HTTP/1.1 408")
    assert not [fd for fd in fds.iterdir() if str(fd.readlink()).startswith(str(server.tmp))]
    ok = httpx.post(f"{server.url}/transcribe", files={"file": ("a.flac", JFK.path.read_bytes())}, timeout=60)
    assert ok.status_code == 200, ok.text


def test_200_half_open_connections_all_end_and_the_server_keeps_serving(server):
    socks = []
    for index in range(200):
        sock = connect(server)
        if index % 2:  # half send part of a request line, half nothing at all
            sock.sendall(b"GET /hea")
        socks.append(sock)
    started = time.monotonic()
    assert health_ok(server) < HEADER_S
    ok = httpx.post(
        f"{server.url}/transcribe", data={"language": "en"}, files={"file": ("a.flac", JFK.path.read_bytes())}
    )
    assert ok.status_code == 200
    assert "country" in ok.json()["transcript"]
    answers = [read_until_closed(sock, HEADER_S + SLACK_S + 5)[0] for sock in socks]
    assert time.monotonic() - started < HEADER_S + SLACK_S + 10
    assert all(answer == b"" for answer in answers[::2])
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers[1::2])
    assert health_ok(server) < HEADER_S


@pytest.mark.parametrize(
    "request_bytes",
    [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000],
    ids=["tls-on-plain-http", "headers-over-16KB"],
)
def test_what_is_not_http_gets_a_documented_400(server, request_bytes):
    sock = connect(server)
    sock.sendall(request_bytes)
    data, _ = read_until_closed(sock, HEADER_S + SLACK_S)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    error = json_body(data)["error"]
    assert error["type"] == "invalid_http"
    assert error["request_id"]


def admitted(server) -> int:
    return httpx.get(f"{server.url}/health", timeout=5).json()["admitted"]


def send_upload(server, path: Path, language: str) -> socket.socket:
    fields = f'--b\r\nContent-Disposition: form-data; name="language"\r\n\r\n{language}\r\n'.encode()
    body = fields + FILE_PART + path.read_bytes() + b"\r\n--b--\r\n"
    sock = connect(server)
    sock.sendall(UPLOAD_HEAD % len(body) + body)
    return sock


def wait_for(condition, limit_s: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit_s, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


def test_clients_that_leave_are_forgotten_waiting_and_running(server):
    """Waiting: the request leaves the line at once. Running: it stops at the next segment.

    Compared with the same long recording transcribed in full in this same run, not with a
    fixed time: the machine is shared.
    """
    started = time.monotonic()
    full = send_upload(server, LONG.path, "fr")
    response, _ = read_until_closed(full, 300)
    full_s = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 200")

    running = send_upload(server, LONG.path, "fr")
    wait_for(lambda: admitted(server) == 1, 10)
    waiting = send_upload(server, JFK.path, "en")
    wait_for(lambda: admitted(server) == 2, 10)
    waiting.close()
    # Had it kept its place, it would have left only after the running one, a full run later.
    left_line = wait_for(lambda: admitted(server) == 1, full_s)
    assert left_line < full_s / 4, "a request that left kept its place in line"

    time.sleep(1.0)  # let it decode and start its first piece
    running.close()
    left_after = wait_for(lambda: admitted(server) == 0, full_s)
    assert left_after < full_s / 2, (
        f"slot freed {left_after:.1f} s after the client left; a full run is {full_s:.1f} s"
    )

    log = server.log.read_text().splitlines()
    outcomes = [line for line in log if "chatserver.access: POST /transcribe" in line][-3:]
    assert [line.split("-> ")[1].split()[0] for line in outcomes] == ["200", "499", "499"], outcomes
