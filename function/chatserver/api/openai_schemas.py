"""OpenAI's audio API shapes: its error body, transcription and translation bodies, stream
events and model objects, as the official SDK (openai-python's ``types.audio``) reads them."""

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field
from starlette.types import Scope

from ..speech.languages import LANGUAGES
from ..speech.transcript import Transcript
from .paths import app_path

OPENAI_PREFIX = "/v1"
# The alias every OpenAI client hard-codes; it names the loaded model.
WHISPER_1 = "whisper-1"


def is_openai_path(scope: Scope) -> bool:
    """Whether a request is for the /v1 routes, whose errors take OpenAI's body."""
    path = app_path(scope)
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


# --- errors ---------------------------------------------------------------------------------


class OpenAIError(BaseModel):
    message: str = Field(description="What was wrong and what is accepted.")
    type: str = Field(description="invalid_request_error (4xx) or server_error (5xx), as OpenAI's.")
    param: str | None = Field(description="The form field at fault, when one is.")
    code: str = Field(description="ChatServer's error type (the README's errors table).")


class OpenAIErrorBody(BaseModel):
    """The body of every error on /v1, as OpenAI's API answers and its SDK reads."""

    error: OpenAIError


# The field at fault for errors that name one; the SDK shows it as ``err.param``.
_PARAMS = {
    "empty_file": "file",
    "file_too_large": "file",
    "audio_too_long": "file",
    "unsupported_media": "file",
    "decode_timeout": "file",
    "unknown_language": "language",
    "unsupported_language": "language",
    "model_not_found": "model",
}


def openai_error(status: int, code: str, message: str, param: str | None = None) -> OpenAIErrorBody:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return OpenAIErrorBody(
        error=OpenAIError(message=message, type=kind, param=param or _PARAMS.get(code), code=code)
    )


# --- requests -------------------------------------------------------------------------------


class OpenAIResponseFormat(StrEnum):
    json = "json"
    text = "text"
    srt = "srt"
    verbose_json = "verbose_json"
    vtt = "vtt"


class Granularity(StrEnum):
    segment = "segment"
    word = "word"


# --- responses ------------------------------------------------------------------------------


class Transcription(BaseModel):
    """``response_format=json``."""

    text: str


class VerboseSegment(BaseModel):
    id: int
    seek: int = Field(description="Offset of the segment's 30 s window, in 10 ms frames.")
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseWord(BaseModel):
    word: str
    start: float
    end: float


class VerboseTranscription(BaseModel):
    """``response_format=verbose_json``: OpenAI's ``TranscriptionVerbose``/``TranslationVerbose``."""

    task: Literal["transcribe", "translate"]
    language: str = Field(description="The spoken language's English name, lower case, as OpenAI's.")
    duration: float
    text: str
    segments: list[VerboseSegment]
    words: list[VerboseWord] | None = Field(
        default=None, description="Only with timestamp_granularities[]=word."
    )


def verbose(transcript: Transcript, task: str, words: bool) -> VerboseTranscription:
    return VerboseTranscription(
        task=task,
        language=LANGUAGES.get(transcript.language, transcript.language),
        duration=transcript.duration,
        text=transcript.text,
        segments=[
            VerboseSegment(
                id=index,
                seek=s.seek,
                start=s.start,
                end=s.end,
                text=s.text,
                tokens=s.tokens,
                temperature=s.temperature,
                avg_logprob=s.avg_logprob,
                compression_ratio=s.compression_ratio,
                no_speech_prob=s.no_speech_prob,
            )
            for index, s in enumerate(transcript.segments)
        ],
        words=[
            VerboseWord(word=w.word, start=w.start, end=w.end)
            for s in transcript.segments
            for w in s.words or ()
        ]
        if words
        else None,
    )


class TextDelta(BaseModel):
    """A stream event: the text of one segment, sent as soon as it is decoded."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TextDone(BaseModel):
    """The stream's last event: the whole text (the deltas joined)."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the model was loaded by this server.")
    owned_by: str = "chatserver"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
