"""Shared fixtures: settings in a private temp dir, the service and an app client, the Lambda runtimes."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatserver.api.app import create_app
from chatserver.core.settings import Settings
from chatserver.speech.service import TranscriptionService
from servers import runtimes


@pytest.fixture
def tmp_audio_dir(tmp_path: Path) -> Path:
    """The service's temp dir for one test, so a test can assert that nothing is left in it."""
    directory = tmp_path / "service-tmp"
    directory.mkdir()
    return directory


@pytest.fixture
def make_settings(tmp_audio_dir: Path):
    def build(**overrides) -> Settings:
        return Settings(tmp_dir=tmp_audio_dir, **overrides)

    return build


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def service(settings: Settings) -> TranscriptionService:
    # Engines are cached per process (engines.load_engine), so this is cheap after the first.
    return TranscriptionService.from_settings(settings)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def no_temp_file_left(tmp_audio_dir: Path) -> Iterator[None]:
    """Fails a test that leaves a file in the service's temp dir (every request cleans up)."""
    yield
    assert list(tmp_audio_dir.iterdir()) == [], "a temp file outlived its request"


@pytest.fixture(scope="module", params=runtimes.RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """The Python the emulator runs the handler on: the suite's (3.11), then the image's (3.12,
    with exactly what infra/image/install.sh installs)."""
    try:
        return runtimes.runtime_python(request.param)
    except FileNotFoundError as missing:
        if os.environ.get("CI"):
            raise  # CI runs infra/install.sh --dev, which creates it
        pytest.skip(str(missing))
