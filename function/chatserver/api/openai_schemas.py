"""OpenAI's audio API shapes: its error body, transcription and translation bodies, stream
events and model objects, as the official SDK (openai-python's ``types.audio``) reads them."""

import math
import re
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


def sdk_param(field: str) -> str:
    """A form field as the SDK's argument names it: ``include[]`` is ``include``, and
    ``chunking_strategy[threshold]`` is ``chunking_strategy.threshold``."""
    name = field.removesuffix("[]")
    return re.sub(r"\[([^\]]+)\]", r".\1", name)


def openai_error(status: int, code: str, message: str, param: str | None = None) -> OpenAIErrorBody:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    param = param or _PARAMS.get(code)
    return OpenAIErrorBody(
        error=OpenAIError(message=message, type=kind, param=sdk_param(param) if param else None, code=code)
    )


# --- requests -------------------------------------------------------------------------------


class TranslationFormat(StrEnum):
    json = "json"
    text = "text"
    srt = "srt"
    verbose_json = "verbose_json"
    vtt = "vtt"


class OpenAIResponseFormat(StrEnum):
    """A transcription's formats: a translation's, and ``diarized_json``, which is refused."""

    json = "json"
    text = "text"
    srt = "srt"
    verbose_json = "verbose_json"
    vtt = "vtt"
    diarized_json = "diarized_json"


class Granularity(StrEnum):
    segment = "segment"
    word = "word"


# --- responses ------------------------------------------------------------------------------


class UsageDuration(BaseModel):
    """What whisper-1 bills: seconds of audio, whole seconds rounded up (OpenAI's examples:
    8.47 s of audio is ``"seconds": 9``)."""

    type: Literal["duration"] = "duration"
    seconds: int = Field(description="The audio's duration, rounded up to whole seconds.")

    @classmethod
    def of(cls, transcript: Transcript) -> "UsageDuration":
        return cls(seconds=math.ceil(transcript.duration))


class Transcription(BaseModel):
    """A transcription's ``response_format=json``."""

    text: str
    usage: UsageDuration


class Translation(BaseModel):
    """A translation's ``response_format=json``: the text only, as OpenAI's ``Translation``."""

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


class VerboseTranslation(BaseModel):
    """A translation's ``verbose_json``: OpenAI's ``TranslationVerbose`` (no words, no usage)."""

    task: Literal["translate"] = "translate"
    language: Literal["english"] = Field(
        default="english", description="The output's language, always english, as OpenAI's."
    )
    duration: float
    text: str
    segments: list[VerboseSegment]


class VerboseTranscription(BaseModel):
    """A transcription's ``verbose_json``: OpenAI's ``TranscriptionVerbose``."""

    task: Literal["transcribe"] = "transcribe"
    language: str = Field(description="The spoken language's English name, lower case, as OpenAI's.")
    duration: float
    text: str
    segments: list[VerboseSegment] | None = Field(
        default=None,
        description="Left out when timestamp_granularities[] asks for words only, as OpenAI's.",
    )
    words: list[VerboseWord] | None = Field(
        default=None, description="Only with timestamp_granularities[]=word."
    )
    usage: UsageDuration


def verbose_segments(transcript: Transcript) -> list[VerboseSegment]:
    return [
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
    ]


def verbose(transcript: Transcript, segments: bool, words: bool) -> VerboseTranscription:
    return VerboseTranscription(
        language=LANGUAGES.get(transcript.language, transcript.language),
        duration=transcript.duration,
        text=transcript.text,
        segments=verbose_segments(transcript) if segments else None,
        words=[
            VerboseWord(word=w.word, start=w.start, end=w.end)
            for s in transcript.segments
            for w in s.words or ()
        ]
        if words
        else None,
        usage=UsageDuration.of(transcript),
    )


class TextDelta(BaseModel):
    """A stream event: the text of one segment, sent as soon as it is decoded."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TextDone(BaseModel):
    """The stream's last event: the whole text (the deltas joined)."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: UsageDuration


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the model was loaded by this server.")
    owned_by: str = "chatserver"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
