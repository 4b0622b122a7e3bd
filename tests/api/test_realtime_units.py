"""Live dictation's pure parts, without a server: client events parsed or refused, session
updates merged (GA and beta), server VAD's turns on frame probabilities, the words a
provisional decode adds, the pace of audio. The service is the real one (its model names)."""

import json
import time

import numpy as np
import pytest

from chatserver.api.realtime.config import ConfigRefused, ServerVad, SessionConfig, apply_update, ga_session
from chatserver.api.realtime.decoding import provisional_words
from chatserver.api.realtime.events import Append, BadEvent, parse_event
from chatserver.api.realtime.limits import AudioPace
from chatserver.api.realtime.turns import FRAME, InputBuffer, SpeechEnd, SpeechStart, TurnDetector

MAX_APPEND = 48_000


@pytest.mark.parametrize(
    ("text", "param", "words"),
    [
        ("not json", None, "not JSON"),
        ("[1, 2]", "type", "JSON object"),
        ('{"type": "response.create", "event_id": "e1"}', "type", "input_audio_buffer.append"),
        ('{"type": "input_audio_buffer.append"}', "audio", "audio: Field required"),
        (
            '{"type": "session.update", "session": 3}',
            "session",
            "session: Input should be a valid dictionary",
        ),
    ],
)
def test_bad_events_are_named_with_what_is_accepted(text: str, param: str | None, words: str) -> None:
    with pytest.raises(BadEvent) as bad:
        parse_event(text, MAX_APPEND)
    assert bad.value.error.error_type == "invalid_event"
    assert bad.value.param == param
    assert words in bad.value.error.message, bad.value.error.message
    if "e1" in text:
        assert bad.value.event_id == "e1"


def test_an_append_over_the_limit_is_refused_before_its_audio_is_decoded() -> None:
    audio = "A" * (MAX_APPEND * 4 // 3 + 8)
    with pytest.raises(BadEvent) as bad:
        parse_event(
            json.dumps({"type": "input_audio_buffer.append", "audio": audio, "event_id": "big"}), MAX_APPEND
        )
    assert (bad.value.error.error_type, bad.value.event_id) == ("append_too_large", "big")
    event = parse_event(json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}), MAX_APPEND)
    assert isinstance(event, Append)


def test_updates_merge_key_by_key_and_null_turns_things_off(service) -> None:
    config = SessionConfig()
    config = apply_update(
        config,
        {"type": "transcription", "audio": {"input": {"transcription": {"language": "French"}}}},
        service,
        beta=False,
    )
    assert config.transcription.model_dump() == {"model": "whisper-1", "language": "fr", "prompt": None}
    assert config.turn_detection == ServerVad()  # left out: unchanged
    config = apply_update(
        config,
        {"type": "transcription", "audio": {"input": {"turn_detection": {"silence_duration_ms": 800}}}},
        service,
        beta=False,
    )
    assert (config.turn_detection.silence_duration_ms, config.turn_detection.threshold) == (800, 0.5)
    config = apply_update(
        config, {"type": "transcription", "audio": {"input": {"turn_detection": None}}}, service, False
    )
    assert config.turn_detection is None
    shown = ga_session(config, "sess_x")["audio"]["input"]
    assert shown["format"] == {"type": "audio/pcm", "rate": 24000}
    assert shown["turn_detection"] is None
    assert shown["transcription"]["language"] == "fr"
    # The beta's flat fields, in either event.
    beta = apply_update(
        config, {"input_audio_transcription": {"model": "base"}, "turn_detection": {}}, service, True
    )
    assert beta.transcription.model == "base"
    assert beta.turn_detection == ServerVad()


def ga(**audio_input: object) -> dict:
    return {"type": "transcription", "audio": {"input": audio_input}}


FIELD = "session.audio.input"


@pytest.mark.parametrize(
    ("session", "param", "error_type"),
    [
        ({"type": "realtime"}, "session.type", "invalid_option"),
        (ga(format={"type": "audio/pcmu"}), f"{FIELD}.format", "invalid_option"),
        (ga(format={"type": "audio/pcm", "rate": 16000}), f"{FIELD}.format", "invalid_option"),
        (ga(transcription={"model": "gpt-4o-transcribe"}), f"{FIELD}.transcription.model", "model_not_found"),
        (ga(transcription={"language": "klingon"}), f"{FIELD}.transcription.language", "unknown_language"),
        (ga(turn_detection={"type": "semantic_vad"}), f"{FIELD}.turn_detection.type", "invalid_option"),
        (ga(turn_detection={"threshold": 2}), f"{FIELD}.turn_detection.threshold", "invalid_option"),
        ({"input_audio_format": "g711_ulaw"}, "session.input_audio_format", "invalid_option"),
    ],
)
def test_refused_updates_name_the_field_and_change_nothing(service, session, param, error_type) -> None:
    with pytest.raises(ConfigRefused) as refused:
        apply_update(SessionConfig(), session, service, beta=False)
    assert (refused.value.param, refused.value.error.error_type) == (param, error_type), (
        refused.value.error.message
    )


def frames(*pattern: tuple[float, int]) -> np.ndarray:
    """Probabilities: (value, how many 32 ms frames) in turn."""
    return np.concatenate([np.full(count, value, dtype=np.float32) for value, count in pattern])


def test_server_vad_turns_start_at_speech_and_end_after_the_silence_duration() -> None:
    detector = TurnDetector(ServerVad(threshold=0.5, silence_duration_ms=500), origin=1000)
    # 10 frames of silence, 30 of speech with a short dip (0.4: between the thresholds, and
    # 0.1 for 5 frames = 160 ms, shorter than 500 ms), then 20 of silence.
    found = detector.frames(frames((0.1, 10), (0.9, 10), (0.4, 3), (0.1, 5), (0.9, 12), (0.1, 20)))
    start = 1000 + 10 * FRAME
    speech_end = 1000 + 40 * FRAME
    assert found[0] == SpeechStart(start)
    assert isinstance(found[1], SpeechEnd)
    assert found[1].position == speech_end
    assert 500 * 16 <= found[1].commit_at - speech_end < 532 * 16
    assert len(found) == 2
    assert not detector.speaking
    # Fed in pieces, the same turns.
    pieces = TurnDetector(ServerVad(), origin=1000)
    probabilities = frames((0.1, 10), (0.9, 10), (0.4, 3), (0.1, 5), (0.9, 12), (0.1, 20))
    assert [c for i in range(0, 60, 7) for c in pieces.frames(probabilities[i : i + 7])] == found


def test_the_buffer_keeps_only_what_no_commit_took() -> None:
    buffer = InputBuffer()
    buffer.append(np.arange(1000, dtype=np.float32))
    buffer.append(np.arange(1000, 1500, dtype=np.float32))
    buffer.drop_before(200)
    assert (buffer.start, buffer.end) == (200, 1500)
    taken = buffer.take(700)
    assert (taken[0], taken[-1], buffer.start) == (200, 699, 700)
    assert (buffer.samples(1000)[0], buffer.samples().size) == (1000, 800)


def test_provisional_words_only_add_and_hold_back_the_last_word() -> None:
    assert provisional_words("The cab is", 0) == ["The", "cab"]
    assert provisional_words("The cabbage juice changes", 2) == ["juice"]  # "cab" became "cabbage": kept
    assert provisional_words("The cabbage", 2) == []
    assert provisional_words("", 0) == []


def test_audio_may_run_ahead_by_the_burst_then_at_the_set_speed() -> None:
    pace = AudioPace(speed=4.0, burst_s=2.0)
    pace.spend(2.0)
    assert pace.delay() == pytest.approx(0.0, abs=0.01)
    pace.spend(4.0)  # 4 s beyond: a second at 4x real time
    assert pace.delay() == pytest.approx(1.0, abs=0.05)
    time.sleep(0.3)
    assert pace.delay() == pytest.approx(0.7, abs=0.1)
