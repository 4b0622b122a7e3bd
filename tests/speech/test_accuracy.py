"""The real model on the real recordings: exact text, word error rate, language detection."""

import jiwer
import pytest

from tests.support.corpus import MANIFEST, clip, normalise

JFK = clip("jfk.flac")

# Corpus WER (all edits over all reference words) per language, on every short clip of the
# manifest, measured with the defaults (faster-whisper, int8, beam 5, VAD off) on 2 cores:
# en 0.101, fr 0.271, de 0.194, es 0.078 (with VAD: 0.085, 0.237, 0.177, 0.108). Through the
# pieces and the sized window (issue 9): en 0.093, fr 0.263, de 0.145, es 0.088 on one AMD EPYC,
# en 0.109, fr 0.237, de 0.145, es 0.078 on another (same packages).
# "one two three" transcribed as "1, 2, 3" and the French voice commands ("annuler" ->
# "Anne-Uli") account for most of it. Thresholds leave a small margin for int8 kernels
# that differ between CPUs.
WER_THRESHOLDS = {"en": 0.12, "fr": 0.30, "de": 0.23, "es": 0.12}


def test_jfk_word_for_word_over_http(client):
    response = client.post(
        "/transcribe",
        files={"file": ("jfk.flac", JFK.path.read_bytes(), "audio/flac")},
        data={"language": "english"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert normalise(body["transcript"]) == normalise(JFK.reference)
    assert body["language"] == "en"
    assert body["duration"] == pytest.approx(JFK.duration, abs=0.05)


@pytest.mark.parametrize("language", sorted(WER_THRESHOLDS))
def test_word_error_rate_per_language(service, language):
    clips = [c for c in MANIFEST if c.language == language and not c.path.name.startswith("long-")]
    assert clips, f"no {language} clips in the manifest"
    references, hypotheses = [], []
    for item in clips:
        transcript = service.transcribe(item.path, service.options(language))
        references.append(normalise(item.reference))
        hypotheses.append(normalise(transcript.text))
    error_rate = jiwer.wer(references, hypotheses)
    assert error_rate <= WER_THRESHOLDS[language], f"{language}: WER {error_rate:.3f} over {len(clips)} clips"


def test_long_webm_as_a_browser_records_it(client, service):
    """63 s of French in WEBM/Opus: several 30 s windows, segments in order, the whole text."""
    long_clip = clip("long-fr-fleurs-000-004.webm")
    response = client.post(
        "/transcribe",
        files={"file": ("note.webm", long_clip.path.read_bytes(), "audio/webm")},
        data={"language": "french", "response_format": "verbose_json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration"] == pytest.approx(long_clip.duration, abs=0.1)
    starts = [segment["start"] for segment in body["segments"]]
    assert starts == sorted(starts)
    assert body["segments"][-1]["end"] > 50, "the transcript stops before the end of the audio"
    transcript = normalise(body["transcript"])
    # Decoded as one 30 s window after another (the seed) it was 0.447: Whisper base skipped the
    # first sentence. Cut at silences it keeps it; test_longform.py holds its words within 0.03
    # of its five clips one by one, and over HTTP it is word for word what the service gives.
    assert transcript == normalise(service.transcribe(long_clip.path, service.options("fr")).text)
    assert "accident a eu lieu" in transcript
    assert "dix sept personnes" in transcript or "17 personnes" in transcript


@pytest.mark.parametrize("language", ["en", "fr", "de", "es"])
def test_language_detected_when_omitted(client, language):
    item = clip(f"fleurs-{language}-000.ogg")
    response = client.post("/transcribe", files={"file": (item.path.name, item.path.read_bytes())})
    assert response.status_code == 200, response.text
    assert response.json()["language"] == language
