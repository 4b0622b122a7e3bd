"""Shared fixtures: settings in a private temp dir, the service and an app client."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatserver.api.app import create_app
from chatserver.service import TranscriptionService
from chatserver.settings import Settings


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
