"""The OpenAPI document is a contract the app keeps: schemathesis against every route it serves.

The real app (real model, FFmpeg) in process through ASGI. Schemathesis generates requests
from the document and checks that each answer is no server error, has a declared status,
a declared media type, declared headers and a body that matches the declared schema.
Bounded: a few examples per operation, no shrinking, so the run takes under a minute.
"""

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from moto import mock_aws
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chatserver.api.app import create_app
from chatserver.core.settings import Settings
from chatserver.jobs.s3 import make_s3_client
from tests.support.http import api_routes
from tests.support.s3 import fake_aws_env

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


BUCKET = "openapi-jobs"


@pytest.fixture
def app(monkeypatch, tmp_audio_dir):
    """The app with every route on: the S3 path against moto's in-process S3 (mock_aws)."""
    fake_aws_env(monkeypatch)
    with mock_aws():
        settings = Settings(tmp_dir=tmp_audio_dir, bucket=BUCKET)
        make_s3_client(settings).create_bucket(Bucket=BUCKET)
        yield create_app(settings)


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# Bounds: examples per operation and generation mode, then no shrinking.
SETTINGS = hypothesis.settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is reproducible
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)


def test_every_answer_matches_the_schema(api_schema):
    # One test over the operations found at run time: schemathesis's lazy pytest
    # parametrisation (from_fixture) relies on a pytest internal that pytest 9 removed.
    failures = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 5
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @SETTINGS
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                case.call_and_validate(checks=CHECKS)

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to negate (no parameters, or only a free-form string): no case.
                assert mode is GenerationMode.NEGATIVE
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a group
                failures[f"{operation.method.upper()} {operation.path} ({mode})"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{where}:\n{what}" for where, what in failures.items())


def test_the_schema_covers_every_route_the_app_serves(app):
    """Routes left out of the document are the page and the docs, which are not API."""
    with TestClient(app) as client:
        document = client.get("/openapi.json").json()
    documented = {
        (method.upper(), path) for path, operations in document["paths"].items() for method in operations
    }
    served = {
        (method, route.path_format)
        for route in api_routes(app.routes)
        if route.include_in_schema
        for method in route.methods
    }
    assert served == documented
    # Every operation declares its errors with the documented error body, never FastAPI's
    # HTTPValidationError, which is never answered.
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "500" in operation["responses"], f"{method} {path} does not declare its 500"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema_ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert "HTTPValidationError" not in schema_ref, f"{method} {path} {status}"
