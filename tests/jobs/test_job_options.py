"""S3 jobs carry their options and render any format: POST /jobs and the upload's metadata, the
engine and the result document, GET /jobs/{id}?format=. Against moto's in-process S3 (mock_aws),
with the real engine on real recordings.

moto accepts a presigned POST without checking its policy; the policy is decoded and checked
here, and a real S3 server enforces it in test_s3_presigned_seaweedfs.py.
"""

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from moto import mock_aws

from chatserver.api.app import create_app
from chatserver.core.settings import Settings
from chatserver.jobs.documents import CompletedJob, FailedJob
from chatserver.jobs.metadata import decode_text, encode_text
from chatserver.jobs.runner import JobRunner
from chatserver.jobs.s3 import ObjectCreated, make_s3_client
from chatserver.speech.engines import TranscribeOptions
from chatserver.speech.service import TranscriptionService
from tests.support.corpus import clip, wer
from tests.support.engines import EngineWrapper, StubEngine
from tests.support.http import assert_error
from tests.support.s3 import CallCounter, fake_aws_env, keys, read_result

BUCKET = "chatserver-options-test"
PROMPT = "Réunion : Jürgen, Anaïs, Kubernetes — 会議"
# Words that only English has among these two languages: a translation into English has some,
# a French transcript none of the French list.
ENGLISH = {"the", "was", "in", "and", "it", "that", "of", "to", "by", "on", "light", "turn"}
FRENCH = {"le", "la", "et", "il", "une", "des", "que", "est", "été", "dans", "lumière", "allume"}


class OptionsSpy(EngineWrapper):
    """The real engine, recording the options of every call."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.calls: list[TranscribeOptions] = []

    def transcribe(self, audio, options, progress=None, on_segment=None):
        self.calls.append(options)
        return self.engine.transcribe(audio, options, progress, on_segment)


@pytest.fixture
def job_settings(make_settings) -> Settings:
    return make_settings(bucket=BUCKET, presign_expiry_s=600)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, job_settings: Settings) -> Iterator[Any]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        client = make_s3_client(job_settings)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def spy(service: TranscriptionService) -> OptionsSpy:
    return OptionsSpy(service.engine)


@pytest.fixture
def spied(job_settings: Settings, spy: OptionsSpy) -> TranscriptionService:
    return TranscriptionService(job_settings, spy)


@pytest.fixture
def api(job_settings: Settings, spied: TranscriptionService, s3: Any) -> Iterator[TestClient]:
    with TestClient(create_app(job_settings, spied), raise_server_exceptions=False) as client:
        yield client


def upload_and_run(job: dict, audio: bytes, runner: JobRunner, s3: Any) -> dict:
    """The client's presigned POST (moto answers it), then the runner on the object it made."""
    upload = requests.post(
        job["upload"]["url"], data=job["upload"]["fields"], files={"file": ("a.audio", audio)}, timeout=30
    )
    assert upload.status_code in (200, 201, 204), upload.text
    head = s3.head_object(Bucket=BUCKET, Key=job["upload_key"])
    runner.handle(ObjectCreated(BUCKET, job["upload_key"], head["ETag"].strip('"'), head["ContentLength"]))
    return head


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[\wéèàù]+", text.lower()))


def test_post_jobs_pins_every_option_in_the_policy_and_echoes_it(api: TestClient, s3: Any) -> None:
    data = {"language": "French", "task": "translate", "prompt": PROMPT, "word_timestamps": "true"}
    response = api.post("/jobs", data=data)
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["language"], job["task"], job["prompt"], job["word_timestamps"]) == (
        "fr",
        "translate",
        PROMPT,
        True,
    )
    assert job["callback_url"] is None
    fields = job["upload"]["fields"]
    options = {name: value for name, value in fields.items() if name.startswith("x-amz-meta-")}
    # A header value is ASCII: the prompt travels RFC 2047-encoded and decodes back whole.
    assert options["x-amz-meta-prompt"].isascii()
    assert options["x-amz-meta-prompt"].startswith("=?UTF-8?B?")
    assert decode_text(options["x-amz-meta-prompt"]) == PROMPT
    assert options == {
        "x-amz-meta-language": "fr",
        "x-amz-meta-task": "translate",
        "x-amz-meta-prompt": options["x-amz-meta-prompt"],
        "x-amz-meta-word-timestamps": "true",
    }
    # Each pinned by the policy: S3 refuses an upload that changes or adds one.
    conditions = json.loads(base64.b64decode(fields["policy"]))["conditions"]
    for name, value in options.items():
        assert {name: value} in conditions
    # An ASCII prompt travels as it is.
    plain = api.post("/jobs", data={"prompt": "Kubernetes, Terraform"}).json()
    assert plain["upload"]["fields"]["x-amz-meta-prompt"] == "Kubernetes, Terraform"
    assert "x-amz-meta-task" not in plain["upload"]["fields"]  # defaults are left out


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"task": "summarise"}, id="task"),
        pytest.param({"language": "klingon"}, id="language"),
        pytest.param({"prompt": "x" * 4001}, id="prompt-too-long"),
        pytest.param({"word_timestamps": "maybe"}, id="word-timestamps"),
    ],
)
def test_post_jobs_refuses_a_bad_option_as_transcribe_does(api: TestClient, s3: Any, data: dict) -> None:
    transcribe = api.post(
        "/transcribe", data=data, files={"file": ("a.wav", clip("sr_english.wav").path.read_bytes())}
    )
    jobs = api.post("/jobs", data=data)
    assert jobs.status_code == transcribe.status_code
    assert jobs.status_code in (400, 422)
    assert jobs.json()["error"]["type"] == transcribe.json()["error"]["type"]
    assert keys(s3, BUCKET) == []  # nothing stored, not even the pending marker


def test_options_over_s3s_metadata_limit_are_refused_at_once(api: TestClient, s3: Any) -> None:
    # 1000 "é" are 2000 bytes of UTF-8, about 2700 encoded: over the 2 KB S3 keeps per object.
    assert_error(api.post("/jobs", data={"prompt": "é" * 1000}), 400, "invalid_option", "2048", "prompt")
    assert keys(s3, BUCKET) == []
    assert api.post("/jobs", data={"prompt": "e" * 1500}).status_code == 201


def test_options_of_post_jobs_reach_the_engine_and_the_result(
    api: TestClient, job_settings: Settings, spied: TranscriptionService, spy: OptionsSpy, s3: Any
) -> None:
    data = {"language": "fr", "task": "translate", "prompt": PROMPT, "word_timestamps": "true"}
    job = api.post("/jobs", data=data).json()
    speech = clip("fleurs-fr-000.ogg")
    head = upload_and_run(job, speech.path.read_bytes(), JobRunner(spied, job_settings, s3), s3)
    assert head["Metadata"]["prompt"].startswith("=?UTF-8?B?")

    doc = read_result(s3, BUCKET, f"transcripts/{job['job_id']}.json")
    assert isinstance(doc, CompletedJob), doc
    assert doc.options.model_dump() == {
        "language": "fr",
        "task": "translate",
        "prompt": PROMPT,
        "word_timestamps": True,
    }
    # The engine got them: the prompt in the first window only, as /transcribe gives it.
    assert spy.calls[0].prompt == PROMPT
    assert all(c.task == "translate" and c.word_timestamps and c.language == "fr" for c in spy.calls)
    assert all(c.prompt is None for c in spy.calls[1:])
    # Translated: English words, no French ones.
    said = words_of(doc.text)
    assert len(said & ENGLISH) >= 2, doc.text
    assert not said & FRENCH, doc.text
    # Every segment carries its words, inside the segment, spelling the segment.
    assert doc.segments
    for segment in doc.segments:
        assert segment.words, segment
        assert all(segment.start - 0.5 <= w.start <= w.end <= segment.end + 0.5 for w in segment.words)
        assert "".join(w.word for w in segment.words).strip() == segment.text.strip()

    status = api.get(job["status_url"]).json()
    assert status["segments"][0]["words"][0]["word"].strip()
    verbose = api.get(job["status_url"], params={"format": "verbose_json"}).json()
    assert verbose["transcript"] == doc.text
    assert verbose["words"] == [w.model_dump() for s in doc.segments for w in s.words or []]


def test_options_of_aws_s3_cp_metadata_reach_the_result(
    job_settings: Settings, spied: TranscriptionService, spy: OptionsSpy, s3: Any
) -> None:
    # What `aws s3 cp --metadata task=translate,word-timestamps=TRUE,prompt==?UTF-8?B?...?=` stores.
    speech = clip("stp-fr-09.wav")
    metadata = {"task": "Translate", "word-timestamps": "TRUE", "prompt": encode_text("Allumé, Jürgen")}
    response = s3.put_object(
        Bucket=BUCKET, Key="uploads/cp.wav", Body=speech.path.read_bytes(), Metadata=metadata
    )
    JobRunner(spied, job_settings, s3).handle(
        ObjectCreated(BUCKET, "uploads/cp.wav", response["ETag"].strip('"'), speech.path.stat().st_size)
    )
    doc = read_result(s3, BUCKET, "transcripts/cp.wav.json")
    assert isinstance(doc, CompletedJob), doc
    assert (doc.options.task, doc.options.word_timestamps, doc.options.prompt) == (
        "translate",
        True,
        "Allumé, Jürgen",
    )
    assert spy.calls[0].prompt == "Allumé, Jürgen"
    assert all(s.words for s in doc.segments)
    assert not words_of(doc.text) & FRENCH, doc.text


@pytest.mark.parametrize(
    ("metadata", "settings", "named", "accepted"),
    [
        pytest.param({"task": "tranlate"}, {}, "x-amz-meta-task", "transcribe or translate", id="task"),
        pytest.param(
            {"word-timestamps": "maybe"}, {}, "x-amz-meta-word-timestamps", "true or false", id="words"
        ),
        pytest.param(
            {"prompt": "=?UTF-8?B?/w==?="}, {}, "x-amz-meta-prompt", "=?UTF-8?B?", id="prompt-encoding"
        ),
        pytest.param(
            {"callback-url": "https://hooks.example.com/done"},
            {},
            "x-amz-meta-callback-url",
            "CHATSERVER_CALLBACK_SECRET",
            id="callback-without-secret",
        ),
        pytest.param(
            {"callback-url": "http://hooks.example.com/done"},
            {"callback_secret": "s" * 32},
            "x-amz-meta-callback-url",
            "not an https URL",
            id="callback-http",
        ),
        pytest.param(
            {"callback-url": "https://169.254.169.254/latest/meta-data/"},
            {"callback_secret": "s" * 32},
            "x-amz-meta-callback-url",
            "cloud metadata",
            id="callback-metadata-address",
        ),
    ],
)
def test_unreadable_metadata_fails_naming_the_header_until_it_is_fixed(
    make_settings, s3: Any, metadata: dict, settings: dict, named: str, accepted: str
) -> None:
    job_settings = make_settings(bucket=BUCKET, **settings)
    engine = StubEngine()
    runner = JobRunner(TranscriptionService(job_settings, engine), job_settings, s3)
    body = clip("sr_english.wav").path.read_bytes()
    key = "uploads/tagged.wav"
    response = s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata)
    record = ObjectCreated(BUCKET, key, response["ETag"].strip('"'), len(body))
    gets = CallCounter(s3, "GetObject", key)

    runner.handle(record)
    doc = read_result(s3, BUCKET, "transcripts/tagged.wav.json")
    assert isinstance(doc, FailedJob), doc
    assert doc.error.type == "invalid_metadata"
    assert named in doc.error.message, doc.error.message
    assert accepted in doc.error.message, doc.error.message
    assert (gets.count, engine.calls) == (0, 0)  # refused before anything was downloaded

    # A redelivery changes nothing: the same version is finished.
    written = s3.head_object(Bucket=BUCKET, Key="transcripts/tagged.wav.json")["ETag"]
    runner.handle(record)
    assert s3.head_object(Bucket=BUCKET, Key="transcripts/tagged.wav.json")["ETag"] == written

    # Fixed in place (`aws s3 cp s3://b/k s3://b/k --metadata-directive REPLACE`): same bytes,
    # same ETag, other metadata: a new version, transcribed.
    s3.copy_object(
        Bucket=BUCKET,
        Key=key,
        CopySource={"Bucket": BUCKET, "Key": key},
        Metadata={},
        MetadataDirective="REPLACE",
    )
    assert s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"') == record.etag
    runner.handle(record)
    assert isinstance(read_result(s3, BUCKET, "transcripts/tagged.wav.json"), CompletedJob)
    assert engine.calls == 1


def test_get_job_renders_a_completed_result_as_transcribe_renders_it(
    api: TestClient, job_settings: Settings, spied: TranscriptionService, s3: Any
) -> None:
    job = api.post("/jobs").json()
    speech = clip("jfk.flac")
    upload_and_run(job, speech.path.read_bytes(), JobRunner(spied, job_settings, s3), s3)
    stored = s3.get_object(Bucket=BUCKET, Key=f"transcripts/{job['job_id']}.json")["Body"].read()

    plain = api.get(job["status_url"])
    as_json = api.get(job["status_url"], params={"format": "json"})
    # json is the document: byte for byte the same answer with or without the parameter, and
    # the very bytes stored (a document without the new options has exactly its old fields).
    assert plain.content == as_json.content == stored
    assert set(plain.json()["options"]) == {"language"}
    assert "words" not in plain.json()["segments"][0]
    assert wer(speech.reference, plain.json()["text"]) < 0.15

    for wanted, media_type in [
        ("text", "text/plain"),
        ("srt", "text/plain"),
        ("vtt", "text/vtt"),
        ("verbose_json", "application/json"),
    ]:
        rendered = api.get(job["status_url"], params={"format": wanted})
        direct = api.post(
            "/transcribe",
            data={"response_format": wanted},
            files={"file": ("jfk.flac", speech.path.read_bytes())},
        )
        assert rendered.status_code == direct.status_code == 200
        assert rendered.headers["content-type"].split(";")[0] == media_type
        assert rendered.headers["content-type"] == direct.headers["content-type"]
        assert rendered.content == direct.content, (wanted, rendered.text, direct.text)
    assert api.get(job["status_url"], params={"format": "SRT"}).text.startswith("1\n00:00:00")


def test_a_job_not_completed_answers_its_document_whatever_the_format(
    api: TestClient, job_settings: Settings, spied: TranscriptionService, s3: Any
) -> None:
    pending = api.post("/jobs").json()
    first = api.get(pending["status_url"]).content
    assert json.loads(first)["status"] == "pending"
    for wanted in ("verbose_json", "text", "srt", "vtt"):
        answer = api.get(pending["status_url"], params={"format": wanted})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.content == first

    failed = api.post("/jobs").json()
    upload_and_run(failed, b"RIFF not audio at all" * 50, JobRunner(spied, job_settings, s3), s3)
    answer = api.get(failed["status_url"], params={"format": "srt"})
    assert answer.status_code == 200
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"]["type"] == "unsupported_media"


def test_an_unknown_format_is_a_400_naming_it_and_the_accepted_ones(api: TestClient, s3: Any) -> None:
    job = api.post("/jobs").json()
    error = assert_error(
        api.get(job["status_url"], params={"format": "docx"}), 400, "invalid_option", "'docx'"
    )
    for accepted in ("json", "verbose_json", "text", "srt", "vtt"):
        assert accepted in error["message"]


def test_a_prompt_decodes_from_every_form_s3_may_give_it() -> None:
    for text in (PROMPT, "plain", " padded ", "two\nlines", "50% =?off", "漢字" * 100):
        encoded = encode_text(text)
        assert encoded.isascii()
        assert "\n" not in encoded
        assert decode_text(encoded) == text
    # S3 returns non-ASCII metadata as encoded-words, possibly several, B or Q.
    assert decode_text("=?UTF-8?B?SsO8cmdlbg==?= =?UTF-8?Q?_caf=C3=A9?=") == "Jürgen café"
    with pytest.raises(ValueError, match="RFC 2047"):
        decode_text("=?UTF-8?B?/w==?=")
