"""The result document of an S3 transcription job, version 1, as stored at ``<result_prefix><key>.json``.

One JSON document per upload key, always written whole with a single PutObject, so a reader
sees either the previous version or the next one, never a mix. ``status`` tells the shape:
``pending`` (POST /jobs created the job, nothing uploaded or picked up yet), ``processing``,
``completed`` or ``failed``. Fields are only ever added within a schema version.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..speech.engines import Task
from ..speech.transcript import DecodedSegment, Segment, Transcript, Word

SCHEMA_VERSION = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Document(BaseModel):
    # "schema" is the name in the JSON; as an attribute it would shadow BaseModel.schema().
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    # Declared here so that it comes second in the JSON; each document type narrows it.
    status: str = Field(description="pending, processing, completed or failed.")
    job_id: str = Field(description="The upload key relative to the upload prefix.")
    updated_at: datetime = Field(default_factory=utc_now, description="When this document was written.")


class Source(BaseModel):
    """The exact upload version a result belongs to: a new upload under the same key has a new ETag."""

    bucket: str
    key: str
    etag: str = Field(description="The object's ETag without quotes, as S3 events give it.")
    size: int


class JobOptions(BaseModel):
    """What the upload asked for (POST /jobs, or its ``x-amz-meta-*`` metadata); part of its version.

    The options added after ``language`` are written only when set: a job without them has the
    document it had before they existed, byte for byte.
    """

    language: str | None = Field(
        default=None, description="ISO 639-1 code from x-amz-meta-language; null: detected."
    )
    task: Task = Field(
        default=Task.transcribe,
        exclude_if=lambda task: task is Task.transcribe,
        description="transcribe (the default, then absent), or translate into English.",
    )
    prompt: str | None = Field(
        default=None,
        exclude_if=lambda prompt: prompt is None,
        description="Conditions the first window of the recording (of a fanned-out job: chunk 1's).",
    )
    word_timestamps: bool = Field(
        default=False,
        exclude_if=lambda words: not words,
        description="Each segment of the result carries its words.",
    )
    callback_url: str | None = Field(
        default=None, exclude_if=lambda url: url is None, description="POSTed to when the result is written."
    )


class JobSegment(Segment):
    """A segment of a result document; with word_timestamps, with its words."""

    words: list[Word] | None = Field(
        default=None,
        # Absent without word_timestamps: such documents stay as they were before words existed.
        exclude_if=lambda words: words is None,
        description="Only with word_timestamps: the segment's words, each with start and end.",
    )

    @classmethod
    def of(cls, segment: DecodedSegment, words: bool) -> "JobSegment":
        return cls(
            start=segment.start,
            end=segment.end,
            text=segment.text,
            words=(segment.words or []) if words else None,
        )


class CallbackDelivery(BaseModel):
    """How the POST to the job's callback_url went (jobs/callback.py)."""

    attempts: int = Field(default=0, ge=0, description="POSTs made; 0 while the first is on its way.")
    delivered_at: datetime | None = Field(default=None, description="When the receiver answered 2xx.")
    last_error: str | None = Field(default=None, description="Why the last attempt failed, if it did.")


class JobError(BaseModel):
    type: str = Field(description="Same values as the HTTP API's error.type, e.g. unsupported_media.")
    message: str


class _RunDocument(_Document):
    source: Source
    options: JobOptions
    created_at: datetime = Field(description="When the upload was stored (the object's Last-Modified).")
    started_at: datetime = Field(description="When the job runner started on this upload.")
    chunks: int = Field(
        default=1,
        ge=1,
        description="Chunks the recording was cut into and transcribed in parallel; 1: one pass.",
    )


class PendingJob(_Document):
    status: Literal["pending"] = "pending"
    created_at: datetime = Field(default_factory=utc_now, description="When POST /jobs created the job.")
    upload_expires_at: datetime = Field(description="The presigned POST is refused after this time.")


class StuckChunk(BaseModel):
    """A chunk of a fanned-out job that kept failing and was dead-lettered (fanout.py)."""

    index: int
    start: float = Field(description="Seconds from the start of the recording.")
    end: float
    error: str


class ProcessingJob(_RunDocument):
    status: Literal["processing"] = "processing"
    progress: float = Field(
        ge=0, le=1, description="Fraction of the audio transcribed so far (fanned out: of the audio seconds)."
    )
    stuck: list[StuckChunk] = Field(
        default_factory=list,
        description="Chunks whose retries ran out; a redrive of them can finish the job.",
    )


class CompletedJob(_RunDocument):
    status: Literal["completed"] = "completed"
    text: str
    language: str = Field(description="ISO 639-1 code, given or detected.")
    duration: float = Field(description="Seconds of audio transcribed.")
    segments: list[JobSegment]
    engine: str
    model: str
    finished_at: datetime
    processing_seconds: float
    callback: CallbackDelivery | None = Field(
        default=None, exclude_if=lambda value: value is None, description="Only with a callback_url."
    )

    def transcript(self) -> Transcript:
        """The result as the renderers of /transcribe take it (GET /jobs/{id}?format=srt...)."""
        segments = [
            DecodedSegment(start=s.start, end=s.end, text=s.text, words=s.words) for s in self.segments
        ]
        return Transcript(text=self.text, language=self.language, duration=self.duration, segments=segments)


class FailedJob(_RunDocument):
    status: Literal["failed"] = "failed"
    error: JobError
    finished_at: datetime
    processing_seconds: float
    callback: CallbackDelivery | None = Field(
        default=None, exclude_if=lambda value: value is None, description="Only with a callback_url."
    )


JobResult = Annotated[PendingJob | ProcessingJob | CompletedJob | FailedJob, Field(discriminator="status")]
RunResult = ProcessingJob | CompletedJob | FailedJob
TerminalResult = CompletedJob | FailedJob

job_result_adapter: TypeAdapter[JobResult] = TypeAdapter(JobResult)


def parse_result(data: bytes | str) -> JobResult:
    return job_result_adapter.validate_json(data)
