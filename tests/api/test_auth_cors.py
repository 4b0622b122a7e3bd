"""API keys and CORS: every route but the public ones needs a key, compared in constant time and
never logged; allowed origins can preflight and POST, others get no CORS headers. In process
for every route, then on a real uvicorn and through the local API Gateway (Lambda)."""

import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from chatserver.api.app import create_app
from chatserver.api.auth import is_public, key_is_valid
from chatserver.core.settings import Settings
from emulation.gateway import lambda_http_server
from tests.support.corpus import clip, normalise
from tests.support.servers import uvicorn_server

KEYS = ("sk-live-alpha-0123456789", "sk-live-beta-9876543210")
ALLOWED = "https://chat.example.com"
OTHER = "https://evil.example.net"
JFK = clip("jfk.flac")


@pytest.fixture(scope="module")
def keyed() -> Iterator[TestClient]:
    settings = Settings(api_keys=",".join(KEYS), cors_origins=f"{ALLOWED}, https://second.example.org")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def protected_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every route the app serves, included routers' too, with its path parameters filled."""
    routes = []
    for context in iter_route_contexts(client.app.routes):
        methods = getattr(context.original_route, "methods", None) or ()
        path = re.sub(r"\{[^}]+\}", "some-id", context.path or "")
        if not is_public({"path": path}):
            routes += [(method, path) for method in sorted(methods)]
    return routes


def test_every_route_but_the_public_ones_needs_a_key(keyed):
    routes = protected_routes(keyed)
    # The app's routes as of this issue; a new route is protected unless made public.
    assert {path for _, path in routes} >= {
        "/transcribe",
        "/detect-language",
        "/jobs",
        "/jobs/some-id",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/models",
        "/v1/models/some-id",
    }
    for method, path in routes:
        for headers in ({}, bearer("sk-wrong"), {"Authorization": KEYS[0]}, bearer(KEYS[0][:-1])):
            response = keyed.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            error = response.json()["error"]
            if path.startswith("/v1/"):
                assert set(error) == {"message", "type", "param", "code"}  # OpenAI's body
                assert error["type"] == "invalid_request_error"
                assert error["code"] == "invalid_api_key"
            else:
                assert error["type"] == "invalid_api_key"
                assert error["request_id"] == response.headers["x-request-id"]
            assert "Authorization: Bearer" in error["message"]


def test_public_routes_need_no_key(keyed):
    assert keyed.get("/health").status_code == 200
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of CHATSERVER_API_KEYS.",
    }
    assert schema["paths"]["/v1/audio/transcriptions"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/config").json()["auth_required"] is True


def test_either_key_is_accepted(keyed):
    for key in KEYS:
        assert keyed.get("/v1/models", headers=bearer(key)).status_code == 200
        # Past the key check: the empty file is what is refused.
        refused = keyed.post("/transcribe", headers=bearer(key), files={"file": ("a.webm", b"")})
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "empty_file"
    assert keyed.get("/v1/models", headers={"Authorization": f"bearer  {KEYS[1]} "}).status_code == 200


def test_key_check_compares_against_every_key():
    keys = Settings(api_keys=",".join(KEYS)).api_keys
    assert key_is_valid(KEYS[0], keys)
    assert key_is_valid(KEYS[1], keys)
    for wrong in ("", KEYS[0][:-1], KEYS[0] + "x", KEYS[1].upper(), "sk-live", "é" * 20):
        assert not key_is_valid(wrong, keys)


def test_keys_are_never_logged_or_shown(keyed, caplog):
    settings = Settings(api_keys=",".join(KEYS))
    assert KEYS[0] not in repr(settings)
    assert KEYS[0] not in settings.model_dump_json()
    with caplog.at_level(logging.DEBUG):
        keyed.get("/v1/models", headers=bearer(KEYS[0]))
        keyed.get("/v1/models", headers=bearer("sk-guess-" + KEYS[1]))
        keyed.post("/transcribe", headers=bearer("sk-guess-" + KEYS[1]), files={"file": ("a", b"x")})
    assert "refused GET /v1/models: wrong API key" in caplog.text
    for secret in (*KEYS, "sk-guess-"):
        assert secret not in caplog.text


def test_preflight_and_post_from_an_allowed_origin(keyed):
    preflight = keyed.options(
        "/transcribe",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200  # answered by CORS: a preflight carries no key
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

    for headers, status in ((bearer(KEYS[0]), 200), ({}, 401)):
        # A 401 carries the CORS headers too, or the page could not read why it was refused.
        response = keyed.get("/v1/models", headers={"Origin": ALLOWED, **headers})
        assert response.status_code == status
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_other_origins_get_no_cors_headers(keyed):
    preflight = keyed.options(
        "/v1/audio/transcriptions",
        headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    # The documented error body (OpenAI's on /v1), saying what was refused.
    error = preflight.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "origin" in error["message"]
    assert "CHATSERVER_CORS_ORIGINS" in error["message"]
    refused = keyed.options("/transcribe", headers={"Origin": OTHER, "Access-Control-Request-Method": "PUT"})
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "cors_refused"
    assert "origin, method" in refused.json()["error"]["message"]
    assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
    response = keyed.get("/v1/models", headers={"Origin": OTHER, **bearer(KEYS[0])})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_by_default_no_key_and_no_cors(client):
    response = client.get("/v1/models", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert not any(h.startswith("access-control-") for h in response.headers)
    preflight = client.options(
        "/transcribe", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


# The Lambda path runs the Runtime Interface Emulator (gateway.py): its tests carry the mark.
@pytest.fixture(scope="module", params=["uvicorn", pytest.param("lambda", marks=pytest.mark.emulator)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp(f"auth-{request.param}")
    env = {"CHATSERVER_API_KEYS": ",".join(KEYS), "CHATSERVER_CORS_ORIGINS": ALLOWED}
    if request.param == "uvicorn":
        with uvicorn_server(env, logs / "server.log") as server:
            yield server.url
        log = (logs / "server.log").read_text()
    else:
        with lambda_http_server(stage="Prod", env=env, log=logs / "lambda.log") as url:
            yield url
        log = (logs / "lambda.log").read_text()
    assert "refused POST /transcribe: no API key" in log
    assert not any(key in log for key in KEYS)


@pytest.mark.parametrize("path", ["/transcribe", "/v1/audio/transcriptions"])
def test_a_browser_on_an_allowed_origin_posts_a_recording(served, path):
    preflight = httpx.options(
        f"{served}{path}",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=30,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED

    files = {"file": ("note.wav", JFK.path.read_bytes())}
    # model is /v1's field only: /transcribe refuses a field it does not take (issue 20).
    data = {"model": "whisper-1", "language": "en"} if path.startswith("/v1") else {"language": "en"}
    answer = httpx.post(
        f"{served}{path}", headers={"Origin": ALLOWED, **bearer(KEYS[1])}, files=files, data=data, timeout=120
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    body = answer.json()
    assert normalise(body.get("text") or body.get("transcript")) == normalise(JFK.reference)

    refused = httpx.post(f"{served}{path}", headers={"Origin": OTHER}, files=files, data=data, timeout=60)
    assert refused.status_code == 401
    assert "access-control-allow-origin" not in refused.headers
