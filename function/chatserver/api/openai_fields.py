"""The form fields of OpenAI's transcription API that are more than one plain part, as
dependencies of the /v1 route: lists (the SDK sends ``name[]``, one part per value; a bare
``name`` is read too), ``chunking_strategy`` (``auto``, or its ``chunking_strategy[...]`` parts),
and the fields ChatServer cannot honour, declared so that each is refused by name."""

from typing import Annotated, Any, Literal

from fastapi import Form
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import InvalidOption, UnsupportedOption, quote_value
from ..speech.segmentation import SpeechDetection
from .openai_schemas import Granularity


def list_form(name: str, description: str) -> Any:
    """A list field, sent as ``name[]`` by the SDK and OpenAI's curl examples, or as ``name``."""
    return Form(alias=f"{name}[]", validation_alias=AliasChoices(f"{name}[]", name), description=description)


async def timestamp_granularities(
    granularities: Annotated[
        list[Granularity] | None,
        list_form(
            "timestamp_granularities",
            "With verbose_json: 'segment' (the default) and/or 'word'; 'word' alone leaves segments out.",
        ),
    ] = None,
) -> set[Granularity]:
    return set(granularities or ())


# --- chunking_strategy ----------------------------------------------------------------------

# OpenAI's ranges where it states them (threshold), else bounds that keep the cut sane: past
# 2 s of padding every short run is all padding, past 10 s of silence a run never ends on a pause.
_THRESHOLD: dict[str, Any] = {"ge": 0.0, "le": 1.0}
_PADDING_MS: dict[str, Any] = {"ge": 0, "le": 2000}
_SILENCE_MS: dict[str, Any] = {"ge": 0, "le": 10_000}


class ServerVad(BaseModel):
    """OpenAI's ``chunking_strategy`` object, with its defaults, as our cut at silences."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"]
    threshold: float = Field(0.5, **_THRESHOLD)
    prefix_padding_ms: int = Field(300, **_PADDING_MS)
    silence_duration_ms: int = Field(200, **_SILENCE_MS)

    def detection(self) -> SpeechDetection:
        # Silero VAD pads both ends of each run of speech by the same amount.
        return SpeechDetection(
            threshold=self.threshold,
            min_silence_s=self.silence_duration_ms / 1000,
            pad_s=self.prefix_padding_ms / 1000,
        )


_VAD_FIELDS = (
    "chunking_strategy[type]=server_vad, with [threshold], [prefix_padding_ms], [silence_duration_ms]"
)


async def chunking_strategy(
    strategy: Annotated[
        str | None,
        Form(
            alias="chunking_strategy",
            description="'auto': ChatServer's own cut at silences (as when omitted). A server_vad "
            "object is sent as the chunking_strategy[...] fields below (a JSON object is read too).",
        ),
    ] = None,
    vad_type: Annotated[
        Literal["server_vad"] | None,
        Form(alias="chunking_strategy[type]", description="server_vad: the fields below set the cut."),
    ] = None,
    threshold: Annotated[
        float | None,
        Form(
            alias="chunking_strategy[threshold]",
            description="Silero VAD's speech probability threshold (default 0.5).",
            **_THRESHOLD,
        ),
    ] = None,
    prefix_padding_ms: Annotated[
        int | None,
        Form(
            alias="chunking_strategy[prefix_padding_ms]",
            description="Audio kept before (and after) each run of speech, in ms (default 300).",
            **_PADDING_MS,
        ),
    ] = None,
    silence_duration_ms: Annotated[
        int | None,
        Form(
            alias="chunking_strategy[silence_duration_ms]",
            description="The shortest pause that ends a run of speech, in ms (default 200).",
            **_SILENCE_MS,
        ),
    ] = None,
) -> SpeechDetection | None:
    """The request's cut at silences; None: the service's own (``auto``, or nothing sent)."""
    given = {
        name: value
        for name, value in (
            ("threshold", threshold),
            ("prefix_padding_ms", prefix_padding_ms),
            ("silence_duration_ms", silence_duration_ms),
        )
        if value is not None
    }
    if strategy is not None and strategy.strip():
        if vad_type is not None or given:
            raise InvalidOption(
                f"Send chunking_strategy=auto or the {_VAD_FIELDS}, not both.", param="chunking_strategy"
            )
        if strategy.strip() == "auto":
            return None
        if strategy.lstrip().startswith("{"):
            return _from_json(strategy)
        raise InvalidOption(
            f"chunking_strategy {quote_value(strategy)} is not one of: 'auto', or server_vad sent as "
            f"{_VAD_FIELDS}.",
            param="chunking_strategy",
        )
    if vad_type is None:
        if given:
            field = f"chunking_strategy[{next(iter(given))}]"
            raise InvalidOption(
                f"chunking_strategy[type]=server_vad is required with {field}.",
                param="chunking_strategy[type]",
            )
        return None
    return ServerVad(type=vad_type, **given).detection()


def _from_json(strategy: str) -> SpeechDetection:
    try:
        return ServerVad.model_validate_json(strategy).detection()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidOption(
            f"chunking_strategy {quote_value(strategy)}: {where + ': ' if where else ''}{error['msg']}. "
            f"Send 'auto', or {_VAD_FIELDS}.",
            param=f"chunking_strategy[{where}]" if where else "chunking_strategy",
        ) from None


# --- refused --------------------------------------------------------------------------------

_REFUSED = {
    "include": (
        "include[] is not supported: ChatServer cannot return token log probabilities. CTranslate2, "
        "which runs Whisper here, gives them only in greedy decoding, not with the beam search used "
        "here, and faster-whisper's decoding loop neither asks for them nor returns them with its "
        "segments (OpenAI itself returns logprobs only from its gpt-4o models). For confidence, use "
        "response_format=verbose_json: every segment has avg_logprob and no_speech_prob."
    ),
    "keywords": (
        "keywords[] (gpt-transcribe's terms to favour) is not supported: Whisper takes no keyword "
        "list. Put the words in prompt instead; Whisper conditions on it."
    ),
    "languages": (
        "languages[] (gpt-transcribe's expected languages) is not supported: Whisper transcribes "
        "in one language. Send language, or leave it out to have it detected."
    ),
    "known_speaker_names": (
        "known_speaker_names[] is not supported: speaker names are for diarization (OpenAI's "
        "gpt-4o-transcribe-diarize), and Whisper does not tell speakers apart."
    ),
    "known_speaker_references": (
        "known_speaker_references[] is not supported: speaker references are for diarization "
        "(OpenAI's gpt-4o-transcribe-diarize), and Whisper does not tell speakers apart."
    ),
}
DIARIZED_JSON_REFUSED = (
    "response_format=diarized_json is not supported: Whisper does not tell speakers apart. "
    "Use json, text, srt, verbose_json or vtt."
)


def _refused(name: str) -> Any:
    return list_form(name, f"Refused with a 400. {_REFUSED[name].split(': ', 1)[1]}")


async def refused_fields(
    include: Annotated[list[str] | None, _refused("include")] = None,
    keywords: Annotated[list[str] | None, _refused("keywords")] = None,
    languages: Annotated[list[str] | None, _refused("languages")] = None,
    known_speaker_names: Annotated[list[str] | None, _refused("known_speaker_names")] = None,
    known_speaker_references: Annotated[list[str] | None, _refused("known_speaker_references")] = None,
) -> None:
    """OpenAI's fields that ChatServer cannot honour: each is a 400 naming it, never ignored."""
    sent = {
        "include": include,
        "keywords": keywords,
        "languages": languages,
        "known_speaker_names": known_speaker_names,
        "known_speaker_references": known_speaker_references,
    }
    for name, values in sent.items():
        if values is not None:
            raise UnsupportedOption(_REFUSED[name], param=f"{name}[]")
