"""An unknown form field or query parameter is a 400 that names it, on every route that takes a
form or a query (api/fields.py), and what a route accepts is read from the route itself.

The real app in process (real model; POST /jobs against moto's in-process S3, mock_aws); the
/v1 routes and the same refusals over HTTP, uvicorn and Lambda, are in test_openai_contract.py.
"""

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Form, Query
from fastapi.testclient import TestClient
from moto import mock_aws
from pydantic import BaseModel

from chatserver.api.app import create_app
from chatserver.api.fields import accepted
from chatserver.api.openai_fields import list_form
from chatserver.jobs.s3 import make_s3_client
from tests.support.corpus import clip
from tests.support.http import api_routes, assert_error
from tests.support.s3 import fake_aws_env

JFK = clip("jfk.flac")
FRENCH_23S = clip("fleurs-fr-001.ogg")
BUCKET = "chatserver-fields-test"

pytestmark = pytest.mark.usefixtures("no_temp_file_left")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, make_settings) -> Iterator[FastAPI]:
    """The app with every route on: the S3 path against moto's in-process S3."""
    fake_aws_env(monkeypatch)
    with mock_aws():
        settings = make_settings(bucket=BUCKET)
        make_s3_client(settings).create_bucket(Bucket=BUCKET)
        yield create_app(settings)


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def audio() -> dict:
    return {"file": ("jfk.flac", JFK.path.read_bytes())}


@pytest.mark.parametrize(
    ("path", "data", "files", "named", "accepted_fields"),
    [
        ("/transcribe", {"language": "en", "model": "whisper-1"}, True, "'model'", "word_timestamps"),
        ("/transcribe", {"languge": "fr"}, True, "'languge'", "language"),  # a typo is not "detect"
        ("/detect-language", {"language": "fr"}, True, "'language'", "file"),
        ("/jobs", {"language": "fr", "temperature": "0.2"}, False, "'temperature'", "callback_url"),
    ],
)
def test_an_unknown_form_field_is_a_400_naming_it_and_what_the_route_takes(
    api, path, data, files, named, accepted_fields
):
    response = api.post(path, data=data, files=audio() if files else None)
    assert_error(response, 400, "unknown_field", named, f"POST {path} takes the form fields", accepted_fields)


def test_several_unknown_fields_are_all_named(api):
    response = api.post("/transcribe", data={"a": "1", "b": "2", "language": "en"}, files=audio())
    assert_error(response, 400, "unknown_field", "form fields 'a', 'b'")


def test_a_query_parameter_is_refused_where_none_is_declared(api):
    response = api.post("/transcribe?language=fr", files=audio())
    assert_error(
        response, 400, "unknown_field", "query parameter 'language'", "takes no query", "form fields"
    )
    response = api.post("/jobs?language=fr")
    assert_error(response, 400, "unknown_field", "'language'")


def test_declared_fields_still_work_on_every_route(api):
    response = api.post("/transcribe", data={"language": "en", "task": "transcribe"}, files=audio())
    assert response.status_code == 200
    assert api.post("/detect-language", files=audio()).json()["language"] == "en"
    created = api.post("/jobs", data={"language": "fr"})
    assert created.status_code == 201, created.text
    assert created.json()["language"] == "fr"
    # A route that takes neither a form nor a query has no option a name could have meant.
    assert api.get("/health", params={"probe": "1"}).status_code == 200


def test_a_body_that_is_not_a_form_is_refused_where_no_field_is_required(api):
    """POST /jobs takes only optional fields: a JSON body would create a job without them."""
    response = api.post("/jobs", json={"language": "fr", "task": "translate"})
    assert_error(response, 400, "malformed_body", "'application/json'", "not a form", "multipart/form-data")
    assert api.post("/jobs").status_code == 201  # no body at all: a job with no options
    # Where a field is required, FastAPI names it, as before (the seed's 422 on /transcribe).
    response = api.post("/transcribe", content=JFK.path.read_bytes(), headers={"content-type": "audio/flac"})
    assert_error(response, 422, "invalid_request", "'file' is required")


def test_what_a_route_accepts_is_what_its_openapi_body_declares(app):
    """accepted() reads the same declarations FastAPI documents: for every form route of the
    app, the field names equal the body schema's properties (plus the bare names of lists)."""
    document = TestClient(app).get("/openapi.json").json()
    components = document["components"]["schemas"]
    checked = 0
    for route in api_routes(app.routes):
        if route.body_field is None:
            continue
        for method in route.methods:
            body = document["paths"][route.path][method.lower()]["requestBody"]["content"]
            ref = next(iter(body.values()))["schema"]["$ref"].rsplit("/", 1)[1]
            documented = set(components[ref]["properties"])
            names = accepted(route).form_names
            assert documented <= names, route.path
            assert {n.removesuffix("[]") for n in documented if n.endswith("[]")} == names - documented
            checked += 1
    assert checked >= 5


class Options(BaseModel):
    task: str = "transcribe"
    word_timestamps: bool = False


def test_a_field_declared_on_a_route_is_accepted_with_no_list_to_keep(app):
    """A route added to the app, as another issue adds fields to POST /jobs: its fields, from a
    form model, a dependency or a list with two spellings, are accepted the moment they are
    declared, and nothing else."""

    async def callback(callback_url: Annotated[str | None, Form()] = None) -> str | None:
        return callback_url

    @app.post("/probe")
    async def probe(
        options: Annotated[Options, Form()],
        url: Annotated[str | None, Depends(callback)],
        tags: Annotated[list[str] | None, list_form("tags", "A list.")] = None,
        format: Annotated[str, Query()] = "json",
    ) -> dict[str, Any]:
        return {"options": options.model_dump(), "url": url, "tags": tags, "format": format}

    with TestClient(app, raise_server_exceptions=False) as client:
        data = {"task": "translate", "word_timestamps": "true", "callback_url": "https://x", "tags": ["a"]}
        response = client.post("/probe?format=srt", data=data)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "options": {"task": "translate", "word_timestamps": True},
            "url": "https://x",
            "tags": ["a"],
            "format": "srt",
        }
        assert client.post("/probe", data={"tags[]": ["b"]}).json()["tags"] == ["b"]
        response = client.post("/probe", data={"callback": "https://x"})
        assert_error(response, 400, "unknown_field", "'callback'", "task, word_timestamps", "callback_url")
        response = client.post("/probe?fmt=srt")
        assert_error(response, 400, "unknown_field", "query parameter 'fmt'", "format")


def test_chunking_strategy_is_read_as_the_sdk_sends_it_or_as_a_json_object(api):
    """The SDK sends chunking_strategy[...] parts; other clients send a JSON object: the same cut."""

    def starts(**data: str) -> list[float]:
        response = api.post(
            "/v1/audio/transcriptions",
            files={"file": (FRENCH_23S.path.name, FRENCH_23S.path.read_bytes())},
            data={"model": "whisper-1", "response_format": "verbose_json", "language": "fr", **data},
        )
        assert response.status_code == 200, response.text
        return [s["start"] for s in response.json()["segments"]]

    parts = starts(**{"chunking_strategy[type]": "server_vad", "chunking_strategy[prefix_padding_ms]": "0"})
    assert starts(chunking_strategy='{"type": "server_vad", "prefix_padding_ms": 0}') == parts
    # A recording over 15 s is decoded run by run, each run one segment: with no padding the
    # first starts where the speech does (about 2.8 s in); with ours, 0.4 s before.
    assert parts[0] > starts(chunking_strategy="auto")[0]

    for data, param in [
        ({"chunking_strategy": "auto", "chunking_strategy[threshold]": "0.5"}, "chunking_strategy"),
        ({"chunking_strategy[silence_duration_ms]": "500"}, "chunking_strategy.type"),
        ({"chunking_strategy": '{"type": "server_vad", "min_ms": 5}'}, "chunking_strategy.min_ms"),
        ({"chunking_strategy": "{not json"}, "chunking_strategy"),
    ]:
        response = api.post("/v1/audio/transcriptions", files=audio(), data={"model": "whisper-1", **data})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param, response.text
