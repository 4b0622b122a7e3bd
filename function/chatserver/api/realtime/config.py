"""A session's effective configuration, how ``session.update`` (GA) and
``transcription_session.update`` (beta) change it, and how it is shown back to the client.

Updates merge key by key as OpenAI documents: a field left out stays as it is, ``null`` turns
``transcription`` or ``turn_detection`` off. An update is checked whole before any of it is
applied, so a refused one changes nothing.
"""

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ...core.errors import ChatServerError, InvalidOption, UnknownModel
from ...speech.languages import to_language_code
from ...speech.options import MAX_PROMPT_CHARS
from ...speech.service import TranscriptionService
from ..routes.openai import model_names

AUDIO_FORMAT = {"type": "audio/pcm", "rate": 24000}


class ServerVad(BaseModel):
    """OpenAI's server VAD with its documented defaults (0.5, 300 ms, 500 ms)."""

    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=5000)
    silence_duration_ms: int = Field(default=500, ge=100, le=10_000)


class Transcription(BaseModel):
    model: str = "whisper-1"
    language: str | None = None  # ISO 639-1; None: detected per turn, as /transcribe does
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)


class SessionConfig(BaseModel):
    transcription: Transcription | None = Field(default_factory=Transcription)
    turn_detection: ServerVad | None = Field(default_factory=ServerVad)


class ConfigRefused(Exception):
    def __init__(self, error: ChatServerError, param: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.param = param


def _object(value: object, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigRefused(InvalidOption(f"{param} must be an object or null."), param)
    return value


def _merged(current: BaseModel | None, update: dict[str, Any], model: type[BaseModel], param: str) -> Any:
    base = current.model_dump() if current is not None else {}
    try:
        return model.model_validate({**base, **update})
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join([param, *map(str, first["loc"])])
        raise ConfigRefused(InvalidOption(f"{where}: {first['msg']}."), where) from None


def _transcription(
    current: Transcription | None, update: object, service: TranscriptionService, param: str
) -> Transcription | None:
    fields = _object(update, param)
    if fields is None:
        return None
    merged = _merged(current, fields, Transcription, param)
    if merged.model not in model_names(service):
        raise ConfigRefused(UnknownModel(merged.model, model_names(service)), f"{param}.model")
    try:
        language = to_language_code(merged.language)
        service.options(language)  # an English-only model refuses other languages
    except ChatServerError as refused:  # UnknownLanguage, UnsupportedLanguage
        raise ConfigRefused(refused, f"{param}.language") from None
    return merged.model_copy(update={"language": language, "prompt": merged.prompt or None})


def _turn_detection(current: ServerVad | None, update: object, param: str) -> ServerVad | None:
    fields = _object(update, param)
    if fields is None:
        return None
    kind = fields.get("type", "server_vad")
    if kind != "server_vad":
        raise ConfigRefused(
            InvalidOption(
                f"{param}.type {kind!r:.40} is not supported: use server_vad, or null to commit "
                "turns yourself."
            ),
            f"{param}.type",
        )
    known = {
        k: v for k, v in fields.items() if k in ServerVad.model_fields
    }  # create_response...: conversation only
    return _merged(current, known, ServerVad, param)


def apply_update(
    config: SessionConfig, session: dict[str, Any], service: TranscriptionService, beta: bool
) -> SessionConfig:
    """The configuration after ``session`` (a GA or beta update's ``session`` object)."""
    if beta or ("audio" not in session and "type" not in session):
        return _apply_beta(config, session, service)
    if session.get("type") != "transcription":
        raise ConfigRefused(
            InvalidOption(
                f"session.type {session.get('type')!r:.40} is not supported: this server runs "
                "transcription sessions only (type 'transcription')."
            ),
            "session.type",
        )
    audio = _object(session.get("audio"), "session.audio") or {}
    audio_input = _object(audio.get("input"), "session.audio.input") or {}
    if "format" in audio_input:
        fmt = _object(audio_input["format"], "session.audio.input.format") or {}
        if {**AUDIO_FORMAT, **fmt} != AUDIO_FORMAT:
            raise ConfigRefused(
                InvalidOption(
                    f"Audio format {fmt!r:.80} is not supported: send PCM16 mono at 24 kHz "
                    '({"type": "audio/pcm", "rate": 24000}).'
                ),
                "session.audio.input.format",
            )
    update: dict[str, Any] = {}
    # noise_reduction is accepted and not applied (it is reported as null); include too.
    if "transcription" in audio_input:
        update["transcription"] = _transcription(
            config.transcription, audio_input["transcription"], service, "session.audio.input.transcription"
        )
    if "turn_detection" in audio_input:
        update["turn_detection"] = _turn_detection(
            config.turn_detection, audio_input["turn_detection"], "session.audio.input.turn_detection"
        )
    return config.model_copy(update=update)


def _apply_beta(
    config: SessionConfig, session: dict[str, Any], service: TranscriptionService
) -> SessionConfig:
    fmt = session.get("input_audio_format", "pcm16")
    if fmt != "pcm16":
        raise ConfigRefused(
            InvalidOption(f"input_audio_format {fmt!r:.40} is not supported: send pcm16 (mono, 24 kHz)."),
            "session.input_audio_format",
        )
    update: dict[str, Any] = {}
    if "input_audio_transcription" in session:
        update["transcription"] = _transcription(
            config.transcription,
            session["input_audio_transcription"],
            service,
            "session.input_audio_transcription",
        )
    if "turn_detection" in session:
        update["turn_detection"] = _turn_detection(
            config.turn_detection, session["turn_detection"], "session.turn_detection"
        )
    return config.model_copy(update=update)


def ga_session(config: SessionConfig, session_id: str) -> dict[str, Any]:
    """As ``session.created`` and ``session.updated`` carry it (a transcription session)."""
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session_id,
        "audio": {
            "input": {
                "format": dict(AUDIO_FORMAT),
                "noise_reduction": None,
                "transcription": config.transcription.model_dump() if config.transcription else None,
                "turn_detection": config.turn_detection.model_dump() if config.turn_detection else None,
            }
        },
        "include": None,
    }


def beta_session(config: SessionConfig, session_id: str) -> dict[str, Any]:
    """As the beta's ``transcription_session.updated`` carries it."""
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "input_audio_format": "pcm16",
        "input_audio_transcription": config.transcription.model_dump() if config.transcription else None,
        "turn_detection": config.turn_detection.model_dump() if config.turn_detection else None,
        "modalities": ["text"],
    }
