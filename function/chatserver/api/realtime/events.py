"""The client events of the Realtime transcription subset, as openai-python's
``types/realtime`` (and the beta's ``transcription_session.update``) shape them."""

import binascii
import json
from base64 import b64decode
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ...core.errors import quote_value
from .errors import AppendTooLarge, InvalidEvent

# The client's own id for an event, echoed in an error about it; never kept or logged whole.
MAX_EVENT_ID_CHARS = 512


class _ClientEvent(BaseModel):
    # Fields this server does not use (OpenAI adds some with each release) are ignored.
    model_config = ConfigDict(extra="ignore")

    event_id: str | None = Field(default=None, max_length=MAX_EVENT_ID_CHARS)


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: dict[str, Any]


class TranscriptionSessionUpdate(_ClientEvent):
    """The beta's update (``OpenAI-Beta: realtime=v1`` clients)."""

    type: Literal["transcription_session.update"]
    session: dict[str, Any]


class Append(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str = Field(description="Base64 of PCM16 mono 24 kHz little-endian audio.")


class Commit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class Clear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


ClientEvent = Annotated[
    SessionUpdate | TranscriptionSessionUpdate | Append | Commit | Clear, Field(discriminator="type")
]
_ADAPTER: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
ACCEPTED = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)


class BadEvent(Exception):
    """A client event refused: the error and the client's ``event_id``, when one could be read."""

    def __init__(self, error: InvalidEvent | AppendTooLarge, event_id: str | None, param: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.event_id = event_id
        self.param = param


def parse_event(text: str, max_append_bytes: int) -> ClientEvent:
    """One text frame as a client event, or ``BadEvent`` naming what is wrong and what is accepted."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise BadEvent(
            InvalidEvent(
                f"The message is not JSON ({len(text)} characters): send one JSON event per message."
            ),
            None,
            None,
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise BadEvent(InvalidEvent('An event must be a JSON object with a string "type".'), None, "type")
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    event_id = event_id[:MAX_EVENT_ID_CHARS] if event_id else None
    kind = raw["type"]
    if kind not in ACCEPTED:
        message = (
            f"Unknown or unsupported event type {quote_value(kind)}: this server transcribes only; "
            f"it accepts {', '.join(ACCEPTED)}."
        )
        raise BadEvent(InvalidEvent(message), event_id, "type")
    if kind == "input_audio_buffer.append" and isinstance(raw.get("audio"), str):
        # Checked before the audio is decoded: base64 carries 3 bytes in every 4 characters.
        size = len(raw["audio"]) * 3 // 4
        if size > max_append_bytes + 2:
            raise BadEvent(AppendTooLarge(size, max_append_bytes), event_id, "audio")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "event"
        message = f"Invalid {kind} event: {where}: {first['msg']}."
        raise BadEvent(InvalidEvent(message), event_id, where) from None


def audio_bytes(event: Append) -> bytes:
    """The appended audio, or ``InvalidEvent`` when it is not base64."""
    try:
        return b64decode(event.audio, validate=True)
    except (binascii.Error, ValueError):
        raise BadEvent(
            InvalidEvent("input_audio_buffer.append: audio is not valid base64 (of PCM16 mono 24 kHz)."),
            event.event_id,
            "audio",
        ) from None
