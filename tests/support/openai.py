"""The real ``openai`` SDK against a real server: uvicorn's /v1, or the Lambda handler's behind
the local API Gateway (infra/emulation/gateway.py, REST events under the real RIE), with keys on.

``tests/api/conftest.py`` makes one server of each kind for the modules that drive /v1.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from openai import OpenAI

from emulation.gateway import lambda_http_server
from tests.support.servers import uvicorn_server

LAMBDA_STAGE = "/Prod"
KEYS = ("sk-test-first-key", "sk-test-second-key")
ENV = {
    "CHATSERVER_API_KEYS": ",".join(KEYS),
    # One slot and no line: a second request while one runs is refused at once (the 503 test).
    "CHATSERVER_MAX_CONCURRENT_JOBS": "1",
    "CHATSERVER_MAX_QUEUED_JOBS": "0",
}


@contextlib.contextmanager
def openai_base_url(kind: str, logs: Path) -> Iterator[str]:
    """The SDK's base_url: uvicorn's /v1 (``kind="uvicorn"``), or /Prod/v1 behind the local API
    Gateway (``"lambda"``); asserts on exit that no temp file outlived its request."""
    env = {**ENV, "CHATSERVER_TMP_DIR": str(logs)}
    if kind == "uvicorn":
        with uvicorn_server(env, logs / "server.log") as server:
            yield f"{server.url}/v1"
    else:
        with lambda_http_server(stage="Prod", env=env, log=logs / "lambda.log") as url:
            assert url.endswith(LAMBDA_STAGE)
            yield f"{url}/v1"
    # No temp file outlives its request, on either path.
    assert [p.name for p in logs.iterdir() if p.name.startswith("chatserver-")] == []


def through_lambda(base_url: str) -> bool:
    return base_url.endswith(f"{LAMBDA_STAGE}/v1")


def sdk(base_url: str, key: str = KEYS[1]) -> OpenAI:
    # No retries: a 503 must reach the test, not be retried away.
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)


def auth(key: str = KEYS[1]) -> dict[str, str]:
    """The header for plain HTTP calls to the same server."""
    return {"Authorization": f"Bearer {key}"}
