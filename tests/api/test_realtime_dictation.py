"""Live dictation as a client uses it: two sentences with a pause, streamed at real-time pace in
100 ms appends through the real ``openai`` SDK, server VAD on (``python -m chatserver``, the
real model, recordings of ../shared/audio joined in the run).

Words come while each sentence is spoken (deltas), each turn's final text right after it ends,
as accurate as POST /transcribe on the same audio. The timings are measured against one
/transcribe of the same audio on the same server, and written to
tests/artifacts/realtime-dictation.json; the assertions use generous bounds and ratios (the
machine is shared).
"""

import json
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.support import REPO
from tests.support.corpus import clip, wer
from tests.support.live import Speech, live, sentences, wav
from tests.support.servers import Server, uvicorn_server

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "tests" / "artifacts"
# 10.6 s and 5.8 s of English, 1.5 s apart: a turn of the "up to 10 s" and a short one.
SPEECH_CLIPS = [clip("fleurs-en-000.ogg"), clip("fleurs-en-003.ogg")]
SILENCE_MS = 800  # longer than the sentences' own pauses, shorter than the 1.5 s between them
PADDING_MS = 300
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("realtime-dictation")
    with uvicorn_server({"CHATSERVER_TMP_DIR": str(tmp)}, tmp.parent / "realtime-dictation.log") as started:
        yield started
    assert list(tmp.iterdir()) == [], "a temp file outlived its session"


def cpu_s(server: Server) -> float:
    times = psutil.Process(server.process.pid).cpu_times()
    return times.user + times.system


@pytest.fixture(scope="module")
def speech() -> Speech:
    return sentences(SPEECH_CLIPS, gap_s=1.5)


@pytest.fixture(scope="module")
def baseline(server: Server, speech: Speech) -> dict[str, float | str]:
    """One POST /transcribe of the same audio: its text, wall time and the server's CPU."""
    body = wav(speech.pcm)
    httpx.post(f"{server.url}/transcribe", files={"file": ("warm.wav", body)}, timeout=120)  # warm caches
    cpu, started = cpu_s(server), time.monotonic()
    answer = httpx.post(
        f"{server.url}/transcribe",
        files={"file": ("two.wav", body, "audio/wav")},
        data={"language": "en"},
        timeout=120,
    )
    wall = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    return {"text": answer.json()["transcript"], "wall_s": wall, "cpu_s": cpu_s(server) - cpu}


def test_two_sentences_give_two_turns_with_words_while_speaking_and_final_text_after(
    server: Server, speech: Speech, baseline: dict
) -> None:
    with live(server.url) as session:
        session.update(
            transcription={"model": "whisper-1", "language": "en"},
            turn_detection={
                "type": "server_vad",
                "silence_duration_ms": SILENCE_MS,
                "prefix_padding_ms": PADDING_MS,
            },
        )
        session.wait_for("session.updated")
        cpu_before = cpu_s(server)
        sent_at = session.stream(speech.pcm, chunk_s=0.1, realtime=True)
        completed = session.wait_for(COMPLETED, speech.turns, timeout=60)
        session_cpu = cpu_s(server) - cpu_before
        events = list(session.events)
    assert [e.type for e in events if e.type == "error"] == []
    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    assert len(committed) == speech.turns, [e.type for e in events]
    items = [e.data["item_id"] for e in committed]
    assert [e.data["item_id"] for e in completed] == items

    turns = []
    for item in items:
        of_item = [e for e in events if e.data.get("item_id") == item]
        kinds = [e.type for e in of_item]
        started = of_item[kinds.index("input_audio_buffer.speech_started")]
        stopped = of_item[kinds.index("input_audio_buffer.speech_stopped")]
        done = of_item[kinds.index(COMPLETED)]
        deltas = [e for e in of_item if e.type == DELTA]
        # Provisional words while the sentence is spoken, before its final text.
        assert deltas, kinds
        assert kinds.index(DELTA) > kinds.index("input_audio_buffer.speech_started"), kinds
        assert all(d.at <= done.at for d in deltas)
        # When the audio of the speech was sent (real-time pace): its start, past the padding.
        speech_sent = sent_at + (started.data["audio_start_ms"] + PADDING_MS) / 1000
        end_sent = sent_at + stopped.data["audio_end_ms"] / 1000
        turns.append(
            {
                "item": item,
                "speech_s": round((stopped.data["audio_end_ms"] - started.data["audio_start_ms"]) / 1000, 2),
                "deltas": len(deltas),
                "provisional": "".join(d.data["delta"] for d in deltas),
                "final": done.data["transcript"],
                "speech_to_first_delta_s": round(deltas[0].at - speech_sent, 3),
                "speech_end_to_completed_s": round(done.at - end_sent, 3),
                "turn_end_to_completed_s": round(done.at - stopped.at, 3),
            }
        )
    final = " ".join(t["final"] for t in turns)
    live_wer, http_wer = wer(speech.reference, final), wer(speech.reference, baseline["text"])
    audio_s = speech.seconds
    measured = {
        "audio_s": round(audio_s, 2),
        "turns": turns,
        "wer_live": round(live_wer, 3),
        "wer_transcribe": round(http_wer, 3),
        "transcribe_wall_s": round(baseline["wall_s"], 3),
        "cpu_per_audio_s_live": round(session_cpu / audio_s, 3),
        "cpu_per_audio_s_transcribe": round(baseline["cpu_s"] / audio_s, 3),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "realtime-dictation.json").write_text(json.dumps(measured, indent=1))

    assert live_wer <= http_wer + 0.05, measured
    # The issue: the final text within 1 s of the end of a turn of up to 10 s on this machine
    # (measured in the JSON). Asserted as a ratio to one /transcribe of both sentences, so that
    # a loaded machine does not fail it: the turn's final decode may wait for the provisional
    # decode running when the turn ended, so twice that.
    bound = max(1.0, 2.0 * baseline["wall_s"])
    for turn in turns:
        assert turn["turn_end_to_completed_s"] <= bound, measured
        # A provisional decode needs 1 s of the turn; it may wait for the previous turn's
        # final decode and for one provisional decode that found nothing to add yet.
        assert turn["speech_to_first_delta_s"] <= 1.0 + 3 * bound, measured
    # Words on screen while the first sentence (10.6 s) is still being spoken.
    assert turns[0]["speech_to_first_delta_s"] < turns[0]["speech_s"], measured
    # Provisional decodes cost more than one decode of the whole, but a session keeps up with
    # real time on one core with room to spare.
    assert measured["cpu_per_audio_s_live"] < 0.75, measured
