"""Live dictation cannot be abused: keys before the handshake, the browser's origin, the limits
(open sessions, session length, idle time, bytes per append, audio faster than real time),
decodes under the same admission as HTTP requests, a client that leaves freeing its slot at
once, no temp file left. One ``python -m chatserver`` with API keys, one slot and no line,
and every limit small; real WebSocket clients (the ``openai`` SDK, the ``websockets`` library).
"""

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.support import REPO
from tests.support.corpus import clip
from tests.support.live import BYTES_PER_SECOND, live, pcm24, silence, wav
from tests.support.servers import Server, uvicorn_server

pytestmark = pytest.mark.slow

KEY = "sk-live-test-0123456789"
ALLOWED_ORIGIN = "https://app.example.com"
IDLE_S = 3
SESSION_S = 20
MAX_APPEND_S = 4
SPEED, BURST_S = 4.0, 5.0
HOLDER = clip("fleurs-fr-001.ogg")  # 23.4 s: keeps the one slot busy for a few seconds
SHORT = clip("sr_english.wav")
LONG_TURN = [clip("jfk.flac"), clip("fleurs-en-000.ogg"), clip("fleurs-en-002.ogg")]  # 33 s
ENV = {
    "CHATSERVER_API_KEYS": KEY,
    "CHATSERVER_CORS_ORIGINS": ALLOWED_ORIGIN,
    "CHATSERVER_MAX_CONCURRENT_JOBS": "1",
    "CHATSERVER_MAX_QUEUED_JOBS": "0",
    "CHATSERVER_REALTIME_MAX_SESSIONS": "2",
    "CHATSERVER_REALTIME_IDLE_TIMEOUT_S": str(IDLE_S),
    "CHATSERVER_REALTIME_MAX_SESSION_S": str(SESSION_S),
    "CHATSERVER_REALTIME_MAX_APPEND_BYTES": str(MAX_APPEND_S * BYTES_PER_SECOND),
    "CHATSERVER_REALTIME_MAX_SPEED": str(SPEED),
    "CHATSERVER_REALTIME_BURST_S": str(BURST_S),
}
AUTH = {"Authorization": f"Bearer {KEY}"}
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("realtime-abuse")
    with uvicorn_server(
        {**ENV, "CHATSERVER_TMP_DIR": str(tmp)}, tmp.parent / "realtime-abuse.log"
    ) as started:
        yield started
    assert list(tmp.iterdir()) == [], "a temp file outlived its session"


def raw(server: Server, **options: object) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{server.port}/v1/realtime?intent=transcription", open_timeout=30, **options
    )


def next_event(socket: ClientConnection, kind: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if event["type"] == kind:
            return event


def close_code(socket: ClientConnection, timeout: float = 30) -> int:
    """The close code the server sent, after whatever events came before it."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            socket.recv(timeout=timeout)
    except ConnectionClosedError as closed:
        return closed.rcvd.code
    raise AssertionError(f"not closed in {timeout} s")


def admitted(server: Server) -> int:
    return httpx.get(f"{server.url}/health", timeout=10).json()["admitted"]


def manual(session) -> None:
    session.update(turn_detection=None, transcription={"model": "whisper-1", "language": "en"})
    session.wait_for("session.updated")


# --- keys and origins: refused before the handshake, so before any audio ----------------------
@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_no_key_or_a_wrong_key_is_a_401_instead_of_the_handshake(server: Server, key: str | None) -> None:
    subprotocols = ["realtime", f"openai-insecure-api-key.{key}"] if key else ["realtime"]
    with pytest.raises(InvalidStatus) as refused:
        raw(server, subprotocols=subprotocols)
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    error = json.loads(response.body)["error"]
    assert (error["code"], error["type"]) == ("invalid_api_key", "invalid_request_error")
    assert "openai-insecure-api-key.<key>" in error["message"]
    with pytest.raises(InvalidStatus, match="401"), live(server.url, key="sk-wrong"):
        pass


def test_the_key_as_a_bearer_header_or_as_a_browser_subprotocol(server: Server) -> None:
    with live(server.url, key=KEY) as session:
        assert session.of_type("session.created")
    with raw(server, subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]) as socket:
        assert socket.subprotocol == "realtime"
        assert KEY not in str(socket.response.headers)
        next_event(socket, "session.created")


def test_a_page_of_another_origin_is_refused_with_403(server: Server) -> None:
    protocols = ["realtime", f"openai-insecure-api-key.{KEY}"]
    with pytest.raises(InvalidStatus) as refused:
        raw(server, subprotocols=protocols, origin="https://elsewhere.example")
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error"]["code"] == "origin_refused"
    for origin in (ALLOWED_ORIGIN, server.url):  # CHATSERVER_CORS_ORIGINS, and the server's own page
        with raw(server, subprotocols=protocols, origin=origin) as socket:
            next_event(socket, "session.created")


# --- limits ----------------------------------------------------------------------------------
def test_sessions_past_the_limit_get_an_error_event_and_close_1013(server: Server) -> None:
    with live(server.url, key=KEY), live(server.url, key=KEY), raw(server, additional_headers=AUTH) as third:
        error = next_event(third, "error")["error"]
        assert (error["code"], error["type"]) == ("server_busy", "server_error")
        assert "connect again in 5 s" in error["message"]
        assert close_code(third) == 1013
    with live(server.url, key=KEY) as again:  # the two closed: there is room again
        assert again.of_type("session.created")


def test_an_idle_session_is_closed_with_an_error_event(server: Server) -> None:
    with raw(server, additional_headers=AUTH) as socket:
        next_event(socket, "session.created")
        started = time.monotonic()
        error = next_event(socket, "error", timeout=IDLE_S + 10)["error"]
        assert error["code"] == "idle_timeout"
        assert close_code(socket) == 1008
        assert IDLE_S - 0.5 <= time.monotonic() - started <= IDLE_S + 5


def test_a_session_ends_at_its_maximum_length(server: Server) -> None:
    with raw(server, additional_headers=AUTH) as socket:
        next_event(socket, "session.created")
        started = time.monotonic()
        received: list[dict] = []
        keep_alive = json.dumps({"type": "input_audio_buffer.append", "audio": ""})  # never idle
        code = None
        while code is None and time.monotonic() - started < SESSION_S + 10:
            try:
                socket.send(keep_alive)
                received.append(json.loads(socket.recv(timeout=1.0)))
            except TimeoutError:
                continue
            except ConnectionClosedError as closed:
                code = closed.rcvd.code
        assert [e["error"]["code"] for e in received if e["type"] == "error"] == ["session_expired"]
        assert code == 1008
        assert SESSION_S - 1 <= time.monotonic() - started <= SESSION_S + 5


def test_an_append_over_the_limit_gets_an_error_and_the_session_goes_on(server: Server) -> None:
    with live(server.url, key=KEY) as session:
        manual(session)
        session.send(
            {
                "type": "input_audio_buffer.append",
                "audio": "A" * (MAX_APPEND_S + 1) * 64_000,
                "event_id": "big",
            }
        )
        (error,) = session.wait_for("error")
        assert (error.data["error"]["code"], error.data["error"]["event_id"]) == ("append_too_large", "big")
        session.stream(pcm24(SHORT), chunk_s=1.0, realtime=False)
        session.send({"type": "input_audio_buffer.commit"})
        (completed,) = session.wait_for("conversation.item.input_audio_transcription.completed", timeout=60)
        # Only the audio that was accepted counts.
        assert completed.data["usage"]["seconds"] == pytest.approx(SHORT.duration, abs=0.05)


def test_audio_faster_than_real_time_is_paced_not_dropped(server: Server) -> None:
    """25 s of audio sent as fast as the socket takes it: the server reads it at 4x real time
    after a 5 s head start, so the commit is seen after about 5 s, with every second kept."""
    audio_s = 25.0
    with live(server.url, key=KEY) as session:
        manual(session)
        started = session.stream(silence(audio_s), chunk_s=1.0, realtime=False)
        session.send({"type": "input_audio_buffer.commit"})
        (committed,) = session.wait_for("input_audio_buffer.committed", timeout=60)
        (completed,) = session.wait_for("conversation.item.input_audio_transcription.completed", timeout=60)
    paced = (audio_s - BURST_S) / SPEED
    assert committed.at - started >= 0.8 * paced, committed.at - started
    assert completed.data["usage"]["seconds"] == pytest.approx(audio_s, abs=0.05)


# --- admission and disconnects -------------------------------------------------------------------
def test_a_refused_decode_is_an_error_event_with_a_retry_hint_and_the_session_goes_on(server: Server) -> None:
    def hold_the_slot() -> None:
        with HOLDER.path.open("rb") as audio:
            httpx.post(f"{server.url}/transcribe", files={"file": audio}, headers=AUTH, timeout=120)

    with live(server.url, key=KEY) as session:
        manual(session)
        holder = threading.Thread(target=hold_the_slot)
        holder.start()
        try:
            deadline = time.monotonic() + 30
            while admitted(server) < 1:
                assert time.monotonic() < deadline, "the holding request never got the slot"
                time.sleep(0.02)
            session.stream(pcm24(SHORT), chunk_s=1.0, realtime=False)
            session.send({"type": "input_audio_buffer.commit"})
            (failed,) = session.wait_for("conversation.item.input_audio_transcription.failed", timeout=30)
            (error,) = session.wait_for("error")
        finally:
            while holder.is_alive():  # an event now and then: the session must not go idle
                session.append(b"")
                holder.join(0.5)
        assert failed.data["error"]["code"] == error.data["error"]["code"] == "server_busy"
        assert error.data["error"]["type"] == "server_error"
        assert "send its audio again in 5 s" in error.data["error"]["message"]
        assert failed.data["item_id"] == session.of_type("input_audio_buffer.committed")[0].data["item_id"]
        # The slot is free again: the same audio, sent again, is transcribed.
        session.stream(pcm24(SHORT), chunk_s=1.0, realtime=False)
        session.send({"type": "input_audio_buffer.commit"})
        (completed,) = session.wait_for("conversation.item.input_audio_transcription.completed", timeout=60)
        assert completed.data["transcript"]
        assert len(session.of_type("error")) == 1  # provisional decodes refused meanwhile: no error


def test_a_client_that_leaves_stops_its_decode_and_frees_the_slot(server: Server) -> None:
    audio = b"".join(pcm24(c) for c in LONG_TURN)
    started = time.monotonic()
    answer = httpx.post(
        f"{server.url}/transcribe",
        files={"file": ("long.wav", wav(audio))},
        data={"language": "en"},
        headers=AUTH,
        timeout=120,
    )
    full_s = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    with live(server.url, key=KEY) as session:
        manual(session)
        session.stream(audio, chunk_s=1.0, realtime=False)
        session.send({"type": "input_audio_buffer.commit"})
        session.wait_for("input_audio_buffer.committed", timeout=60)
        deadline = time.monotonic() + 10
        while admitted(server) < 1:  # its final decode is running (sent at 4x: no provisional ones)
            assert time.monotonic() < deadline, "the final decode never started"
            time.sleep(0.01)
        time.sleep(0.3)
        session.connection.close()
        left = time.monotonic()
    deadline = left + full_s
    while admitted(server) > 0:
        assert time.monotonic() < deadline, "the slot was held as long as the whole decode"
        time.sleep(0.01)
    freed_s = time.monotonic() - left
    # The service stops at the end of the piece it is decoding (three pieces here), as for an
    # HTTP client that leaves: well before the whole decode.
    ARTIFACTS.mkdir(exist_ok=True)
    measured = {"transcribe_33s_wall_s": round(full_s, 3), "slot_freed_after_leaving_s": round(freed_s, 3)}
    (ARTIFACTS / "realtime-disconnect.json").write_text(json.dumps(measured))
    assert freed_s < 0.7 * full_s, (freed_s, full_s)
    assert session.of_type("conversation.item.input_audio_transcription.completed") == []
    assert "ended (client_left)" in server.log.read_text()
