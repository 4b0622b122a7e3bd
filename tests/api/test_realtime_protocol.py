"""The Realtime transcription protocol as clients speak it: the real ``openai`` SDK's realtime
client (and, for raw frames and subprotocols, the ``websockets`` library) against
``python -m chatserver`` on 127.0.0.1, with the real model on recordings of ../shared/audio.

Turn detection off here (the client commits); server VAD and live partials are in
test_realtime_dictation.py, the limits and keys in test_realtime_abuse.py.
"""

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferCommittedEvent,
    RealtimeErrorEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from websockets.sync.client import connect

from tests.support.corpus import clip, normalise, wer
from tests.support.live import Live, live, pcm24, silence, wav
from tests.support.servers import Server, uvicorn_server

JFK = clip("jfk.flac")
ONE_TWO_THREE = clip("sr_english.wav")
BODY_TIMEOUT_S = 2  # the HTTP body deadline: a WebSocket must outlive it
REALTIME_UPDATE = json.dumps({"type": "session.update", "session": {"type": "realtime"}})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("realtime-protocol")
    env = {"CHATSERVER_TMP_DIR": str(tmp), "CHATSERVER_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    with uvicorn_server(env, tmp.parent / "realtime-protocol.log") as started:
        yield started
    assert list(tmp.iterdir()) == [], "a temp file outlived its session"


def ws_url(server: Server, query: str = "intent=transcription") -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime?{query}"


def manual(session: Live, **transcription: object) -> None:
    session.update(turn_detection=None, transcription={"model": "whisper-1", **transcription})
    session.wait_for("session.updated")


def test_config_offers_live_dictation_on_uvicorn(server: Server) -> None:
    config = httpx.get(f"{server.url}/config", timeout=30).json()
    assert config["live"] is True
    assert config["live_max_session_s"] == 1800


def test_session_created_then_updated_as_the_sdk_types_them(server: Server) -> None:
    with live(server.url) as session:
        (created,) = session.of_type("session.created")
        assert isinstance(created.parsed, SessionCreatedEvent)
        assert created.data["event_id"].startswith("event_")
        audio_input = created.data["session"]["audio"]["input"]
        assert created.data["session"]["type"] == "transcription"
        assert audio_input["format"] == {"type": "audio/pcm", "rate": 24000}
        assert audio_input["turn_detection"] == {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        }
        session.update(
            transcription={"model": "whisper-1", "language": "en", "prompt": "Kennedy"},
            turn_detection={"type": "server_vad", "silence_duration_ms": 800},
            noise_reduction={"type": "near_field"},  # accepted, not applied: reported as null
        )
        (updated,) = session.wait_for("session.updated")
        assert isinstance(updated.parsed, SessionUpdatedEvent)
        audio_input = updated.data["session"]["audio"]["input"]
        assert audio_input["transcription"] == {"model": "whisper-1", "language": "en", "prompt": "Kennedy"}
        assert audio_input["turn_detection"]["silence_duration_ms"] == 800
        assert audio_input["turn_detection"]["threshold"] == 0.5  # left out: unchanged
        assert audio_input["noise_reduction"] is None


def test_beta_transcription_session_update_gets_its_own_answer(server: Server) -> None:
    with live(server.url) as session:
        session.send(
            {
                "type": "transcription_session.update",
                "session": {
                    "input_audio_format": "pcm16",
                    "input_audio_transcription": {"model": "whisper-1", "language": "fr"},
                    "turn_detection": None,
                },
            }
        )
        (updated,) = session.wait_for("transcription_session.updated")
        assert updated.data["session"]["input_audio_transcription"]["language"] == "fr"
        assert updated.data["session"]["turn_detection"] is None


def test_the_client_commits_turns_itself_with_turn_detection_null(server: Server) -> None:
    """Two recordings, each committed by the client: each item committed then transcribed as
    POST /transcribe transcribes the same audio, with the audio's duration as usage."""
    first, second = pcm24(JFK), pcm24(ONE_TWO_THREE)
    with live(server.url) as session:
        manual(session, language="en")
        session.stream(first, chunk_s=0.5, realtime=False)
        session.send({"type": "input_audio_buffer.commit"})
        session.stream(second + silence(0.3), chunk_s=0.5, realtime=False)
        session.send({"type": "input_audio_buffer.commit", "event_id": "mine"})
        committed = session.wait_for("input_audio_buffer.committed", 2)
        completed = session.wait_for("conversation.item.input_audio_transcription.completed", 2, timeout=120)
    assert all(isinstance(c.parsed, InputAudioBufferCommittedEvent) for c in committed)
    assert committed[0].data["previous_item_id"] is None
    assert committed[1].data["previous_item_id"] == committed[0].data["item_id"]
    assert [c.data["item_id"] for c in completed] == [c.data["item_id"] for c in committed]
    assert all(isinstance(c.parsed, ConversationItemInputAudioTranscriptionCompletedEvent) for c in completed)
    assert completed[0].data["usage"] == {
        "type": "duration",
        "seconds": pytest.approx(JFK.duration, abs=0.05),
    }
    for pcm, clip_, event in ((first, JFK, completed[0]), (second, ONE_TWO_THREE, completed[1])):
        answer = httpx.post(
            f"{server.url}/transcribe",
            files={"file": ("audio.wav", wav(pcm), "audio/wav")},
            data={"language": "en"},
            timeout=120,
        ).json()
        assert (
            wer(clip_.reference, event.data["transcript"])
            <= wer(clip_.reference, answer["transcript"]) + 0.05
        )


def test_clear_and_an_empty_commit(server: Server) -> None:
    with live(server.url) as session:
        manual(session)
        session.send({"type": "input_audio_buffer.commit", "event_id": "empty-1"})
        (error,) = session.wait_for("error")
        assert isinstance(error.parsed, RealtimeErrorEvent)
        assert error.data["error"]["code"] == "input_audio_buffer_commit_empty"
        assert error.data["error"]["type"] == "invalid_request_error"
        assert error.data["error"]["event_id"] == "empty-1"
        session.append(silence(1.0))
        session.send({"type": "input_audio_buffer.clear"})
        session.wait_for("input_audio_buffer.cleared")
        session.send({"type": "input_audio_buffer.commit"})  # cleared: empty again
        assert session.wait_for("error", 2)[1].data["error"]["code"] == "input_audio_buffer_commit_empty"
        assert session.of_type("input_audio_buffer.committed") == []


def raw_session(server: Server, query: str = "intent=transcription", **options: object):
    return connect(ws_url(server, query), open_timeout=30, **options)


def next_event(socket, kind: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        event = json.loads(socket.recv(timeout=30))
        if event["type"] == kind:
            return event
    raise AssertionError(f"no {kind}")


@pytest.mark.parametrize(
    ("frame", "code", "param", "says"),
    [
        ("this is not json", "invalid_event", None, "not JSON"),
        ('{"no": "type"}', "invalid_event", "type", 'string "type"'),
        ('{"type": "response.create", "event_id": "r1"}', "invalid_event", "type", "transcribes only"),
        ('{"type": "input_audio_buffer.append", "audio": "%%%"}', "invalid_event", "audio", "base64"),
        (REALTIME_UPDATE, "invalid_option", "session.type", "only"),
    ],
)  # fmt: skip
def test_a_malformed_event_gets_an_error_naming_it_and_the_session_goes_on(
    server: Server, frame: str, code: str, param: str | None, says: str
) -> None:
    with raw_session(server) as socket:
        next_event(socket, "session.created")
        socket.send(frame)
        error = next_event(socket, "error")["error"]
        assert (error["code"], error["param"]) == (code, param), error
        assert says in error["message"], error
        if '"r1"' in frame:
            assert error["event_id"] == "r1"
        socket.send(b"\x00\x01")  # a binary frame: refused in words too
        assert next_event(socket, "error")["error"]["message"].startswith("Binary messages are not accepted")
        socket.send(json.dumps({"type": "session.update", "session": {"type": "transcription"}}))
        assert next_event(socket, "session.updated")["session"]["type"] == "transcription"


def test_the_realtime_subprotocol_is_selected_and_the_key_never_echoed(server: Server) -> None:
    offered = ["realtime", "openai-insecure-api-key.sk-not-echoed", "openai-beta.realtime-v1"]
    with raw_session(server, subprotocols=offered) as socket:
        assert socket.subprotocol == "realtime"
        assert socket.response.headers["Sec-WebSocket-Protocol"] == "realtime"
        assert "sk-not-echoed" not in str(socket.response.headers)
        next_event(socket, "session.created")
    with raw_session(server) as socket:  # the SDK offers none, and none is selected
        assert socket.subprotocol is None


def test_an_intent_other_than_transcription_is_refused_in_words(server: Server) -> None:
    with raw_session(server, "intent=conversation") as socket:
        error = next_event(socket, "error")["error"]
        assert error["code"] == "invalid_option"
        assert "intent=transcription" in error["message"]
        with pytest.raises(Exception, match="1008"):
            socket.recv(timeout=10)


def test_a_session_outlives_the_http_body_deadline(server: Server) -> None:
    """uvicorn's upgrade request went through our h11 protocol with its body deadline
    (api/deadlines.py): the WebSocket must not be closed by it."""
    with live(server.url) as session:
        manual(session, language="en")
        deadline = time.monotonic() + BODY_TIMEOUT_S + 1.5
        while time.monotonic() < deadline:
            session.append(silence(0.2))
            time.sleep(0.2)
        session.stream(pcm24(ONE_TWO_THREE), realtime=False)
        session.send({"type": "input_audio_buffer.commit"})
        (completed,) = session.wait_for("conversation.item.input_audio_transcription.completed", timeout=60)
        assert not session.closed.is_set()
    assert normalise(completed.data["transcript"]) in ("one two three", "1 2 3"), completed.data
