"""Shared fixtures: settings in a private temp dir, the service and an app client, a moto server.

The Lambda runtimes' fixture is tests/aws_lambda/conftest.py's; the helpers are in tests/support/.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatserver.api.app import create_app
from chatserver.core.settings import Settings
from chatserver.speech.service import TranscriptionService
from tests.support.s3 import MotoServer, moto_server


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


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    """A moto server (S3, SQS...) on 127.0.0.1 for one test, reset, stopped after it."""
    with moto_server() as server:
        yield server
