"""Every setting, read once from the environment (prefix ``CHATSERVER_``)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EngineName = Literal["faster-whisper", "openai-whisper"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHATSERVER_", extra="ignore")

    engine: EngineName = "faster-whisper"
    # "base" is the multilingual base model embedded through pinned PyPI packages; any other
    # value is a local CTranslate2 directory, an openai-whisper .pt file, or an official name
    # (which the engine downloads, so only where there is network).
    model: str = "base"
    model_dir: Path = Field(
        default=Path.home() / ".cache" / "chatserver" / "models",
        description="Where the joined packaged model and derived checkpoints are cached.",
    )
    compute_type: str = "int8"
    cpu_threads: int = Field(default=0, ge=0, description="0: one per available core.")
    beam_size: int = Field(default=5, ge=1, le=10)
    vad_filter: bool = False

    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_audio_seconds: float = Field(default=600.0, gt=0)
    ffmpeg_path: Path | None = None
    ffmpeg_timeout_s: float = Field(default=60.0, gt=0)
    tmp_dir: Path | None = None

    max_concurrent_jobs: int = Field(default=1, ge=1)
    max_queued_jobs: int = Field(default=2, ge=0)
    retry_after_s: int = Field(default=5, ge=1)

    log_json: bool = False
    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    return Settings()
