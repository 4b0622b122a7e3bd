"""Every setting, read once from the environment (prefix ``CHATSERVER_``)."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    cpu_threads: int = Field(default=0, ge=0, description="Per transcription; 0: engines.cpu_threads.")
    beam_size: int = Field(default=5, ge=1, le=10)
    # Off by default: over the 34 recordings VAD cut mean WER only from 0.257 to 0.251 while
    # one recording got much worse (0.10 -> 0.28), and it adds ~75 MB (bench/, README).
    vad_filter: bool = False

    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_audio_seconds: float = Field(default=600.0, gt=0)
    ffmpeg_path: Path | None = None
    ffmpeg_timeout_s: float = Field(default=60.0, gt=0)
    tmp_dir: Path | None = None

    # More runs that many transcriptions (and pieces of one) at once, one thread each: on 2 cores
    # 2 gave 1.6x the answers a minute and a 63 s recording 2.4x faster, but a 600 s speech
    # upload then peaked at 835 MB (README), past the 600 MB that one upload may take.
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

    # --- Pieces, sized windows and compute bounds (issue 9; issue 10 items 1 and 4) ---
    # A recording is cut at silences into pieces of at most this (segmentation.py). Measured on
    # the English clips joined with 0.6 s silences: pieces of 28 s lost whole sentences (WER
    # 0.411 against 0.093 clip by clip), 20 s 0.155, 15 s 0.093 (README).
    piece_max_s: float = Field(default=15.0, gt=1, le=28)
    # The default engine's encoder window sized to each piece (engines/faster.py WindowRule):
    # min(30 s, max(window_min_s, piece + window_margin_s)); where a voice note's window is
    # shorter than window_decoder_min_s, the decoder sees a silent window's encoding past it
    # (sized_window.py), and a long recording's runs keep windows of window_decoder_min_s or more.
    # On the 355 clips of ../shared/commands and ../shared/audio up to 15 s, language given
    # (corpus WER, 1919 words; the bare engine 0.234-0.235): a 5 s floor 0.233-0.234 in 0.34x the
    # bare engine's time, 15 s 0.232 in 0.43x; a 5 s window alone 0.729 (README, "Voice notes").
    sized_window: bool = True
    window_min_s: float = Field(default=5.0, ge=3, le=30)
    window_decoder_min_s: float = Field(default=15.0, ge=3, le=30)
    window_margin_s: float = Field(default=3.0, ge=0, le=10)
    # Engine seconds a transcription may use: this many per second of audio, never under the
    # floor; past it the transcription stops with 503 compute_budget_exceeded (S3: failed).
    engine_budget_per_audio_s: float = Field(default=1.0, gt=0)
    engine_budget_floor_s: float = Field(default=30.0, gt=0)
    # --- end of pieces, windows and compute bounds ---

    # --- Fan-out of long S3 uploads (issue 13; chunks.py, fanout.py, chunk_worker.py) ---
    # Without a chunk queue every upload is transcribed in one pass, as before.
    chunk_queue_url: str | None = None
    sqs_endpoint_url: str | None = None
    work_prefix: str = Field(default="work/", min_length=1)
    # Uploads longer than this are cut into chunks and fanned out (README: fan-out figures).
    fanout_min_seconds: float = Field(default=600.0, gt=0)
    chunk_seconds: float = Field(default=180.0, ge=30, le=900)
    # Each cut is the quietest spot in the last this-many seconds before chunk_seconds.
    chunk_search_seconds: float = Field(default=20.0, gt=0)
    # The chunk queue's maxReceiveCount (template.yaml): the last delivery marks the chunk stuck.
    chunk_max_receives: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _work_outside_uploads_and_results(self) -> "Settings":
        # Chunks under the upload prefix would start jobs of their own; under the result
        # prefix they would be taken for results.
        for name, prefix in (("upload_prefix", self.upload_prefix), ("result_prefix", self.result_prefix)):
            if self.work_prefix.startswith(prefix) or prefix.startswith(self.work_prefix):
                raise ValueError(f"work_prefix {self.work_prefix!r} and {name} {prefix!r} must not overlap")
        if self.chunk_search_seconds >= self.chunk_seconds:
            raise ValueError("chunk_search_seconds must be less than chunk_seconds")
        return self

    # --- end of fan-out settings ---

    # --- Job callbacks (issue 20; jobs/callback.py) -----------------------------------------
    # Signs every callback (X-ChatServer-Signature); without it POST /jobs refuses callback_url.
    callback_secret: SecretStr | None = None
    # Local use and tests only: callbacks to loopback and private addresses, and over http.
    callback_allow_private: bool = False
    # One attempt (connect, send, read the status line) may take this long...
    callback_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # ...there are at most this many, the first retry after callback_backoff_s, each later one
    # after twice the previous wait...
    callback_max_attempts: int = Field(default=4, ge=1, le=10)
    callback_backoff_s: float = Field(default=1.0, ge=0, le=60)
    # ...and all of them together stop after this long (and before the Lambda invocation ends).
    callback_total_s: float = Field(default=30.0, gt=0, le=300)

    @field_validator("callback_secret", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        # The template passes an empty parameter as "": that means no secret, not an empty key.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    # --- end of job callbacks ---------------------------------------------------------------

    # --- API keys and CORS (issue 11) -------------------------------------------------------
    # Comma-separated in the environment. SecretStr: no repr, log line or error shows a key.
    # Empty: no key is asked for.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Browser origins allowed to call the API ("https://app.example.com"); none by default.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str | SecretStr):
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    # --- end of API keys and CORS -------------------------------------------------------------

    # --- Read deadlines and uploads in flight (issue 10; server.py, api/middleware.py) -------
    # From a connection's first byte (or its previous answer) to the end of the request's
    # headers; an idle connection is closed after it too.
    header_timeout_s: float = Field(default=10.0, gt=0)
    # From the end of the headers to the end of the body: 25 MiB in 60 s is 3.5 Mbit/s, and
    # API Gateway gives a whole request 29-30 s anyway. A slower body gets a 408.
    body_timeout_s: float = Field(default=60.0, gt=0)
    # Request bodies being received at once; beyond that, 503 + Retry-After at once. Each may
    # hold a spooled upload of up to max_upload_bytes in tmp_dir until its deadline.
    max_receiving_uploads: int = Field(default=4, ge=1)
    # --- end of read deadlines ---------------------------------------------------------------

    # --- Live dictation: the Realtime WebSocket at /v1/realtime (issue 21; api/realtime/) -----
    # Off: /config says so and the route refuses every connection. Never offered through API
    # Gateway (Lambda), whose REST API cannot hold a WebSocket.
    realtime_enabled: bool = True
    realtime_max_sessions: int = Field(default=4, ge=1, description="Sessions open at once.")
    realtime_max_session_s: float = Field(default=1800.0, gt=0, description="Longest session.")
    # No client message for this long ends the session (a live client sends audio all along).
    realtime_idle_timeout_s: float = Field(default=60.0, gt=0)
    # Audio bytes (decoded from base64) in one input_audio_buffer.append: 1 MiB is 21.8 s of
    # PCM16 at 24 kHz (OpenAI allows 15 MiB; a live client sends 20-100 ms at a time).
    realtime_max_append_bytes: int = Field(default=1024 * 1024, gt=0)
    # Audio may arrive this many times faster than real time, after a head start of
    # realtime_burst_s seconds of audio; beyond that the server reads the next message later
    # (TCP pushes back on the client): nothing is dropped.
    realtime_max_speed: float = Field(default=4.0, ge=1)
    realtime_burst_s: float = Field(default=30.0, gt=0)
    # An open turn (or, without turn detection, the uncommitted buffer) this long is committed
    # by the server itself: it bounds a session's memory and what one decode may cost.
    realtime_max_turn_s: float = Field(default=60.0, gt=1)
    # A provisional decode of the open turn at most this often (and never more often than
    # twice its own last duration), for the words shown while the user speaks.
    realtime_partial_interval_s: float = Field(default=1.0, ge=0.2)
    # --- end of live dictation --------------------------------------------------------------------

    @field_validator("tmp_dir")
    @classmethod
    def _usable_tmp_dir(cls, value: Path | None) -> Path | None:
        """Created where it is missing, refused at start where it cannot be used: otherwise every
        upload past Starlette's 1 MB spool, and every decode, failed with a 500."""
        if value is None:
            return None
        try:
            value.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"CHATSERVER_TMP_DIR {str(value)!r} cannot be created ({exc.strerror}): "
                "name a writable directory, or leave it unset for the system's"
            ) from exc
        if not os.access(value, os.W_OK | os.X_OK):
            raise ValueError(
                f"CHATSERVER_TMP_DIR {str(value)!r} is not writable by this process: "
                "name a writable directory, or leave it unset for the system's"
            )
        return value

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
