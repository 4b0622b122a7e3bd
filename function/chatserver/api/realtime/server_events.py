"""The server events this server sends, with the fields openai-python's ``types/realtime`` reads.

Every event has a fresh ``event_id`` (``event_`` and 21 letters or digits, as OpenAI's); items
are ``item_...`` and sessions ``sess_...``. Times are milliseconds on the session's audio
timeline: the audio the client has appended since it connected.
"""

import secrets
import string
from typing import Any, Literal

from pydantic import BaseModel, Field

from ...core.errors import ChatServerError

_ALPHABET = string.ascii_letters + string.digits


class ClientLeft(Exception):
    """An event could not be sent: the connection is closed."""


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(21))


class ServerEvent(BaseModel):
    event_id: str = Field(default_factory=lambda: new_id("event"))


class SessionCreated(ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: dict[str, Any]


class SessionUpdated(ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: dict[str, Any]


class TranscriptionSessionUpdated(ServerEvent):
    type: Literal["transcription_session.updated"] = "transcription_session.updated"
    session: dict[str, Any]


class SpeechStarted(ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStopped(ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class Committed(ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None


class Cleared(ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class TranscriptDelta(ServerEvent):
    """Provisional words of a turn, appended to those sent before (never a correction)."""

    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptCompleted(ServerEvent):
    """The turn's final text, decoded as POST /transcribe decodes; it may differ from the deltas."""

    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: DurationUsage


class ErrorDetail(BaseModel):
    """OpenAI's ``RealtimeError``: ``code`` is ChatServer's error type (the README's table)."""

    type: str
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None


def error_detail(
    error: ChatServerError, param: str | None = None, event_id: str | None = None
) -> ErrorDetail:
    kind = "server_error" if error.status_code >= 500 else "invalid_request_error"
    return ErrorDetail(
        type=kind, code=error.error_type, message=error.message, param=param, event_id=event_id
    )


class ErrorEvent(ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail


class TranscriptFailed(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int = 0
    error: ErrorDetail
