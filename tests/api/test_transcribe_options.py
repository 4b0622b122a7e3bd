"""POST /transcribe's new options (task, prompt, temperature, word_timestamps; vad_filter has
its own module), and the seed's default request and answer pinned byte for byte."""

import itertools
import json
import re

import pytest

from tests.support.corpus import clip, normalise

JFK = clip("jfk.flac")
FRENCH = clip("fleurs-fr-000.ogg")


def test_seed_answer_is_byte_for_byte_the_same(client):
    files = {"file": ("audio.webm", JFK.path.read_bytes())}
    response = client.post("/transcribe", files=files, data={"language": "english"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert normalise(body["transcript"]) == normalise(JFK.reference)
    # The seed's serialisation exactly: these keys in this order, compact, nothing added.
    text = json.dumps(body["transcript"], ensure_ascii=False)
    expected = f'{{"transcript":{text},"language":"en","duration":11.0}}'
    assert response.content == expected.encode()

    # Every new option at its default changes nothing.
    defaults = {"language": "english", "task": "transcribe", "word_timestamps": "false"}
    assert client.post("/transcribe", files=files, data=defaults).content == response.content

    verbose = client.post(
        "/transcribe", files=files, data={"language": "en", "response_format": "verbose_json"}
    )
    body = verbose.json()
    segments = ",".join(
        f'{{"start":{s["start"]!r},"end":{s["end"]!r},"text":{json.dumps(s["text"], ensure_ascii=False)}}}'
        for s in body["segments"]
    )
    assert verbose.content.decode() == (
        f'{{"transcript":{json.dumps(body["transcript"], ensure_ascii=False)},"language":"en",'
        f'"duration":11.0,"segments":[{segments}]}}'
    )


def test_translate_gives_english_and_the_spoken_language(client):
    files = {"file": ("note.ogg", FRENCH.path.read_bytes())}
    body = client.post("/transcribe", files=files, data={"task": "translate"}).json()
    assert body["language"] == "fr"
    text = normalise(body["transcript"])
    assert "accident" in text
    assert "mountain" in text
    assert "montagneux" not in text


def test_prompt_conditions_the_style(client):
    """A prompt in lower case without punctuation makes Whisper write the same way."""
    files = {"file": ("a.flac", JFK.path.read_bytes())}
    plain = client.post("/transcribe", files=files, data={"language": "en"}).json()["transcript"]
    styled = client.post(
        "/transcribe",
        files=files,
        data={"language": "en", "prompt": "and so my fellow americans ask not what your country can do"},
    ).json()["transcript"]
    assert re.search(r"[A-Z,.]", plain)
    assert not re.search(r"[A-Z,.]", styled), styled
    assert normalise(styled) == normalise(JFK.reference)


def test_word_timestamps_add_words_in_order_within_the_audio(client):
    files = {"file": ("a.flac", JFK.path.read_bytes())}
    for response_format in ("json", "verbose_json"):
        body = client.post(
            "/transcribe", files=files, data={"word_timestamps": "true", "response_format": response_format}
        ).json()
        words = body["words"]
        assert normalise(" ".join(w["word"] for w in words)) == normalise(body["transcript"])
        assert all(0 <= w["start"] <= w["end"] <= body["duration"] for w in words)
        assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(words))
        assert all(0 < w["probability"] <= 1 for w in words)
        assert ("segments" in body) is (response_format == "verbose_json")


def test_one_temperature_still_transcribes(client):
    files = {"file": ("a.flac", JFK.path.read_bytes())}
    body = client.post("/transcribe", files=files, data={"language": "en", "temperature": "0.4"}).json()
    assert normalise(body["transcript"]) == normalise(JFK.reference)


@pytest.mark.parametrize(
    ("data", "status", "named"),
    [
        ({"task": "summarise"}, 422, "task"),
        ({"temperature": "1.5"}, 422, "temperature"),
        ({"temperature": "hot"}, 422, "temperature"),
        ({"prompt": "x" * 4001}, 422, "prompt"),
        ({"word_timestamps": "maybe"}, 422, "word_timestamps"),
        ({"vad_filter": "sometimes"}, 422, "vad_filter"),
        ({"word_timestamps": "true", "response_format": "srt"}, 400, "word_timestamps"),
    ],
)
def test_bad_options_are_refused_before_any_audio_is_read(client, data, status, named):
    response = client.post("/transcribe", files={"file": ("a.flac", b"not read")}, data=data)
    assert response.status_code == status
    assert named in response.json()["error"]["message"]
