"""The servers that the /v1 modules (test_openai_sdk.py, test_openai_contract.py) share."""

from collections.abc import Iterator

import pytest

from tests.support.openai import openai_base_url


# Package scope: one uvicorn and one Lambda server for both modules. The Lambda path runs the
# Runtime Interface Emulator (gateway.py): its tests carry the mark.
@pytest.fixture(scope="package", params=["uvicorn", pytest.param("lambda", marks=pytest.mark.emulator)])
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The SDK's base_url: uvicorn's /v1, or /Prod/v1 behind the local API Gateway."""
    with openai_base_url(request.param, tmp_path_factory.mktemp(f"openai-{request.param}")) as url:
        yield url
