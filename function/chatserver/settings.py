"""Every setting, read once from the environment (prefix ``CHATSERVER_``)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
    # Off by default: over the 34 recordings VAD cut mean WER only from 0.257 to 0.251 while
    # one recording got much worse (0.10 -> 0.28), and it adds ~75 MB (bench/, README).
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

    # Lambda: a custom domain's base path mapping that API Gateway leaves in the path ("/v1").
    # Named HTTP API stages ("/prod/transcribe") are recognised from the event without it.
    api_base_path: str = "/"

    # The S3 path (POST /jobs and the job runner). Without a bucket, POST /jobs answers 501.
    bucket: str | None = None
    upload_prefix: str = Field(default="uploads/", min_length=1)
    result_prefix: str = Field(default="transcripts/", min_length=1)
    presign_expiry_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # Enforced by the presigned POST policy and again by the runner, since `aws s3 cp` skips
    # the policy. It must fit Lambda's /tmp (512 MB unless configured larger).
    max_job_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_job_audio_seconds: float = Field(default=3600.0, gt=0)
    progress_interval_s: float = Field(default=15.0, gt=0, le=30)
    s3_endpoint_url: str | None = None
    s3_region: str | None = Field(default=None, description="None: boto3's own (AWS_REGION in Lambda).")
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)
    s3_read_timeout_s: float = Field(default=30.0, gt=0)
    s3_max_attempts: int = Field(default=4, ge=1, le=10)

    @model_validator(mode="after")
    def _results_outside_uploads(self) -> "Settings":
        # A result written under the watched prefix would trigger another job, forever; a
        # result prefix that is a prefix of the upload prefix can put results there too.
        if self.result_prefix.startswith(self.upload_prefix) or self.upload_prefix.startswith(
            self.result_prefix
        ):
            raise ValueError(
                f"result_prefix {self.result_prefix!r} and upload_prefix {self.upload_prefix!r} "
                "must not overlap: results under the upload prefix would trigger new jobs"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
