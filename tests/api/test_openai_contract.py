"""OpenAI's audio contract to the letter (issue 20), with the real ``openai`` SDK on uvicorn and
through the Lambda handler behind the local API Gateway (tests/api/conftest.py's ``base_url``):
usage, word-only verbose_json, 400s with ``param`` for invalid values and for every field that
ChatServer refuses, unknown fields refused on every route, and chunking_strategy's server_vad
changing where the recording is cut.
"""

import math

import httpx
import openai
import pytest

from tests.support.corpus import clip, normalise
from tests.support.openai import auth, sdk

JFK = clip("jfk.flac")
FRENCH = clip("fleurs-fr-000.ogg")
# 23 s of continuous French speech: longer than a piece (15 s), so the cut at silences must
# choose where the second piece starts, and it starts after 2.7 s of silence.
FRENCH_23S = clip("fleurs-fr-001.ogg")


def transcribe(base_url: str, audio_clip=JFK, **fields):
    with audio_clip.path.open("rb") as audio:
        return sdk(base_url).audio.transcriptions.create(model="whisper-1", file=audio, **fields)


def refused(base_url: str, **fields) -> openai.BadRequestError:
    """The 400 the SDK raises for a transcription with these fields."""
    with pytest.raises(openai.BadRequestError) as error:
        transcribe(base_url, **fields)
    assert error.value.status_code == 400
    assert error.value.type == "invalid_request_error"
    return error.value


def test_usage_in_json_verbose_json_and_the_stream_done_event(base_url):
    """whisper-1's usage: seconds of audio, rounded up to whole seconds as OpenAI bills them."""
    seconds = math.ceil(JFK.duration)
    result = transcribe(base_url)
    assert normalise(result.text) == normalise(JFK.reference)
    assert result.usage.type == "duration"
    assert result.usage.seconds == seconds

    verbose = transcribe(base_url, response_format="verbose_json")
    assert (verbose.usage.type, verbose.usage.seconds) == ("duration", seconds)
    assert verbose.duration == pytest.approx(JFK.duration, abs=0.05)

    events = list(transcribe(base_url, stream=True))
    done = events[-1]
    assert done.type == "transcript.text.done"
    # The SDK types the done event's usage as tokens (gpt-4o's); duration is read as it came.
    usage = done.usage.model_dump()
    assert usage["type"] == "duration"
    assert usage["seconds"] == seconds


def test_verbose_json_has_segments_unless_only_words_are_asked_for(base_url):
    client = sdk(base_url)
    with JFK.path.open("rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=audio, response_format="verbose_json", timestamp_granularities=["word"]
        )
    body = raw.http_response.json()
    assert "segments" not in body  # left out, not null, as OpenAI's answer
    assert normalise(" ".join(w["word"] for w in body["words"])) == normalise(JFK.reference)
    assert body["usage"]["type"] == "duration"
    words_only = raw.parse()
    assert words_only.segments is None
    assert words_only.words

    for granularities in (["segment"], None):
        extra = {"timestamp_granularities": granularities} if granularities else {}
        segments_only = transcribe(base_url, response_format="verbose_json", **extra)
        assert segments_only.segments
        assert segments_only.words is None
        assert "words" not in segments_only.model_dump(exclude_unset=True)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_translation_follows_openais_bodies(base_url):
    """TranslationVerbose: the output's language, always english; neither body has usage."""
    client = sdk(base_url)
    with FRENCH.path.open("rb") as audio:
        result = client.audio.translations.create(
            model="whisper-1", file=audio, response_format="verbose_json"
        )
    assert result.language == "english"
    assert "mountain" in normalise(result.text)
    assert result.segments
    assert not {"usage", "words"} & set(result.model_extra or {})
    with FRENCH.path.open("rb") as audio:
        plain = client.audio.translations.create(model="whisper-1", file=audio)
    assert "accident" in normalise(plain.text)
    assert "usage" not in (plain.model_extra or {})


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"temperature": 1.5}, "temperature", ["less than or equal to 1"]),
        ({"prompt": "x" * 4001}, "prompt", ["4000"]),
        ({"timestamp_granularities": ["sentence"]}, "timestamp_granularities", ["'segment' or 'word'"]),
        (
            {"response_format": "json", "timestamp_granularities": ["word"]},
            "timestamp_granularities",
            ["verbose_json"],
        ),
        ({"language": "klingon"}, "language", ["'fr'"]),
        ({"chunking_strategy": "semantic"}, "chunking_strategy", ["'auto'", "server_vad"]),
        ({"chunking_strategy": {"type": "semantic_vad"}}, "chunking_strategy.type", ["server_vad"]),
        (
            {"chunking_strategy": {"type": "server_vad", "threshold": 2}},
            "chunking_strategy.threshold",
            ["less than or equal to 1"],
        ),
        (
            {"chunking_strategy": {"type": "server_vad", "silence_duration_ms": -1}},
            "chunking_strategy.silence_duration_ms",
            ["greater than or equal to 0"],
        ),
    ],
)
def test_an_invalid_value_is_a_400_naming_its_field(base_url, fields, param, words):
    error = refused(base_url, **fields)
    assert error.param == param, error.body
    for word in words:
        assert word in error.message, error.message


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"include": ["logprobs"]}, "include", ["log probabilities", "avg_logprob"]),
        ({"keywords": ["Kowloon"]}, "keywords", ["prompt"]),
        ({"languages": ["fr", "en"]}, "languages", ["language"]),
        ({"known_speaker_names": ["agent"]}, "known_speaker_names", ["speakers"]),
        (
            {"known_speaker_references": ["data:audio/wav;base64,AAAA"]},
            "known_speaker_references",
            ["speakers"],
        ),
        ({"response_format": "diarized_json"}, "response_format", ["verbose_json"]),
    ],
)
def test_fields_chatserver_cannot_honour_are_refused_by_name(base_url, fields, param, words):
    error = refused(base_url, **fields)
    assert error.code == "unsupported_option"
    assert error.param == param
    for word in words:
        assert word in error.message, error.message


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_an_unknown_field_is_a_400_on_every_route(base_url):
    """Never dropped without a word: /v1 (OpenAI's body, the SDK's BadRequestError), and
    /transcribe and /detect-language (ChatServer's), through the same server."""
    error = refused(base_url, extra_body={"diarize": "true"})
    assert (error.code, error.param) == ("unknown_field", "diarize")
    with pytest.raises(openai.BadRequestError) as translation, FRENCH.path.open("rb") as audio:
        # OpenAI's translations take no language: sent anyway, it is named, not ignored.
        sdk(base_url).audio.translations.create(model="whisper-1", file=audio, extra_body={"language": "fr"})
    assert (translation.value.code, translation.value.param) == ("unknown_field", "language")
    assert "prompt" in translation.value.message  # what the route does take

    root = base_url.removesuffix("/v1")
    files = {"file": ("jfk.flac", JFK.path.read_bytes())}
    for path, data, params, named in [
        ("/transcribe", {"language": "en", "model": "whisper-1"}, {}, "'model'"),
        ("/transcribe", {}, {"language": "fr"}, "'language'"),
        ("/detect-language", {"language": "fr"}, {}, "'language'"),
    ]:
        response = httpx.post(root + path, files=files, data=data, params=params, headers=auth(), timeout=120)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "unknown_field"
        assert named in error["message"]
        assert error["request_id"] == response.headers["x-request-id"]


def test_chunking_strategy_sets_where_the_recording_is_cut(base_url):
    """server_vad's fields reach the cut at silences: a recording over 15 s is decoded run by run,
    each run one segment that spans it (padding included), so the segments show the runs."""

    def runs(**fields) -> list[tuple[float, float]]:
        result = transcribe(base_url, FRENCH_23S, response_format="verbose_json", language="fr", **fields)
        assert "sommes d accord" in normalise(result.text)
        return [(s.start, s.end) for s in result.segments]

    def vad(**fields) -> dict:
        return {"chunking_strategy": {"type": "server_vad", **fields}}

    assert runs(chunking_strategy="auto") == runs()
    # OpenAI's defaults (threshold 0.5, 300 ms of padding, 200 ms of silence): measured 4 runs,
    # the first from 2.77 s (ours, 400 ms and 500 ms: 2 runs, from 2.67 s).
    openai = runs(**vad())
    assert len(openai) > len(runs())
    # Padding is kept before each run of speech: 1 s instead of 0.3 s starts the first 0.7 s earlier.
    assert runs(**vad(prefix_padding_ms=1000))[0][0] == pytest.approx(openai[0][0] - 0.7, abs=0.02)
    # A pause must last 1 s to end a run: the short pauses at 5.3 s no longer do (measured 2 runs,
    # the second from 14.4 s, where the 15 s limit splits the first).
    patient = runs(**vad(silence_duration_ms=1000))
    assert len(patient) < len(openai)
    assert patient[1][0] > openai[1][0] + 5
    # A stricter threshold hears the speech begin later (measured 2.84 s) and cuts it more often.
    strict = runs(**vad(threshold=0.9))
    assert strict[0][0] > openai[0][0]
    assert len(strict) > len(openai)
