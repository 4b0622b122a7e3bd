"""OpenAI's audio API: ``/v1/audio/transcriptions``, ``/v1/audio/translations`` and ``/v1/models``,
so that code written for OpenAI's SDK runs unchanged with ``base_url=<server>/v1``."""

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response

from ...core.errors import ACCEPTED_FORMATS, InvalidOption, ModelNotFound, UnknownModel, UnsupportedOption
from ...speech.engines import Task
from ...speech.options import MAX_PROMPT_CHARS, request_options
from ...speech.segmentation import SpeechDetection
from ...speech.service import TranscriptionService
from ...speech.transcript import Transcript, render_text
from ..dependencies import ServiceDep, SlotsDep
from ..openai_fields import DIARIZED_JSON_REFUSED, chunking_strategy, refused_fields, timestamp_granularities
from ..openai_schemas import (
    OPENAI_PREFIX,
    WHISPER_1,
    Granularity,
    Model,
    ModelList,
    OpenAIErrorBody,
    OpenAIResponseFormat,
    Transcription,
    Translation,
    TranslationFormat,
    UsageDuration,
    VerboseTranscription,
    VerboseTranslation,
    verbose,
    verbose_segments,
)
from ..openapi import BODY_ERRORS, COMMON_ERRORS, error_responses, text_content
from ..running import transcribe_upload
from ..streaming import stream_transcription

router = APIRouter(prefix=OPENAI_PREFIX, tags=["OpenAI-compatible"])

# The model is loaded when the app is built, at import of the entry point: near enough.
_LOADED_AT = int(time.time())

_TRANSCRIBE_ERRORS = error_responses(
    *COMMON_ERRORS,
    *BODY_ERRORS,
    401,
    415,
    507,
    descriptions={
        400: "An invalid or unknown field, a field ChatServer cannot honour (param names it), an "
        "unknown model or language, or an empty file.",
        422: "Not answered: an invalid field is a 400 here, as OpenAI answers it.",
    },
    model=OpenAIErrorBody,
)
_TEXT_AND_EVENTS = {
    **text_content(),
    "text/event-stream": {
        "schema": {"type": "string"},
        "description": "stream=true: transcript.text.delta events, then one transcript.text.done.",
    },
}

FileField = Annotated[UploadFile, File(description=f"The recording: {ACCEPTED_FORMATS}.")]
ModelField = Annotated[str, Form(description=f"The loaded model's name, or its alias {WHISPER_1!r}.")]
PromptField = Annotated[
    str | None,
    Form(max_length=MAX_PROMPT_CHARS, description="Text in the audio's style or words it contains."),
]
TemperatureField = Annotated[
    float,
    Form(ge=0, le=1, description="0: Whisper's own schedule, raised on failed windows; else that one."),
]


def model_names(service: TranscriptionService) -> list[str]:
    return [service.engine.model, WHISPER_1]


def _check_model(service: TranscriptionService, model: str) -> None:
    if model not in model_names(service):
        raise UnknownModel(model, model_names(service))


def _text(transcript: Transcript, response_format: str) -> Response | None:
    if rendered := render_text(transcript, response_format):
        body, media_type = rendered
        return PlainTextResponse(body, media_type=media_type)
    return None


@router.post(
    "/audio/transcriptions",
    response_model=Transcription | VerboseTranscription,
    # Absent keys are left out, as OpenAI's: no "words": null, no segments with words only.
    response_model_exclude_none=True,
    # OpenAI's fields that ChatServer cannot honour: declared, so that each is a 400 naming it.
    dependencies=[Depends(refused_fields)],
    responses={
        200: {"description": "The transcript in response_format, or events.", "content": _TEXT_AND_EVENTS},
        **_TRANSCRIBE_ERRORS,
    },
    summary="Transcribe audio (OpenAI-compatible)",
)
async def create_transcription(
    request: Request,
    service: ServiceDep,
    slots: SlotsDep,
    file: FileField,
    model: ModelField,
    granularities: Annotated[set[Granularity], Depends(timestamp_granularities)],
    detection: Annotated[SpeechDetection | None, Depends(chunking_strategy)],
    language: Annotated[
        str | None, Form(description="ISO 639-1 code or Whisper language name; omit to detect.")
    ] = None,
    prompt: PromptField = None,
    response_format: Annotated[
        OpenAIResponseFormat,
        Form(description="How the transcript is returned; diarized_json is refused (no speakers)."),
    ] = OpenAIResponseFormat.json,
    temperature: TemperatureField = 0.0,
    stream: Annotated[
        bool, Form(description="Answer as server-sent events; response_format is then not used.")
    ] = False,
) -> Transcription | VerboseTranscription | Response:
    _check_model(service, model)
    if response_format is OpenAIResponseFormat.diarized_json:
        raise UnsupportedOption(DIARIZED_JSON_REFUSED, param="response_format")
    words = Granularity.word in granularities
    if words and response_format is not OpenAIResponseFormat.verbose_json and not stream:
        raise InvalidOption(
            "timestamp_granularities[]=word needs response_format=verbose_json, as with OpenAI's API.",
            param="timestamp_granularities[]",
        )
    options = request_options(
        service,
        language,
        prompt=prompt,
        temperature=temperature or None,
        word_timestamps=words and not stream,
        detection=detection,
    )
    if stream:
        return await stream_transcription(request, slots, service, file.file, options)
    transcript = await transcribe_upload(request, slots, service, file.file, options)
    if text := _text(transcript, response_format):
        return text
    if response_format is OpenAIResponseFormat.verbose_json:
        # OpenAI: segments unless word timestamps alone are asked for; words only when asked.
        segments = Granularity.segment in granularities or not words
        return verbose(transcript, segments=segments, words=words)
    return Transcription(text=transcript.text, usage=UsageDuration.of(transcript))


@router.post(
    "/audio/translations",
    response_model=Translation | VerboseTranslation,
    responses={
        200: {"description": "The English translation in response_format.", "content": text_content()},
        **_TRANSCRIBE_ERRORS,
    },
    summary="Translate audio into English (OpenAI-compatible)",
)
async def create_translation(
    request: Request,
    service: ServiceDep,
    slots: SlotsDep,
    file: FileField,
    model: ModelField,
    prompt: PromptField = None,
    response_format: Annotated[
        TranslationFormat, Form(description="How the translation is returned.")
    ] = TranslationFormat.json,
    temperature: TemperatureField = 0.0,
) -> Translation | VerboseTranslation | Response:
    _check_model(service, model)
    options = request_options(
        service, None, task=Task.translate, prompt=prompt, temperature=temperature or None
    )
    transcript = await transcribe_upload(request, slots, service, file.file, options)
    if text := _text(transcript, response_format):
        return text
    if response_format is TranslationFormat.verbose_json:
        # OpenAI's TranslationVerbose: the output's language (english), segments, no words.
        return VerboseTranslation(
            duration=transcript.duration, text=transcript.text, segments=verbose_segments(transcript)
        )
    return Translation(text=transcript.text)


_MODEL_ERRORS = error_responses(*COMMON_ERRORS, 401, model=OpenAIErrorBody)


@router.get("/models", responses=_MODEL_ERRORS, summary="The loaded model and its alias")
async def list_models(service: ServiceDep) -> ModelList:
    return ModelList(data=[Model(id=name, created=_LOADED_AT) for name in model_names(service)])


@router.get(
    "/models/{model_id}",
    # 422 too (never answered: any string is a model id), or FastAPI declares HTTPValidationError.
    responses={**_MODEL_ERRORS, **error_responses(404, 422, model=OpenAIErrorBody)},
    summary="One model",
)
async def get_model(
    service: ServiceDep, model_id: Annotated[str, Path(description="A name from GET /v1/models.")]
) -> Model:
    if model_id not in model_names(service):
        raise ModelNotFound(model_id, model_names(service))
    return Model(id=model_id, created=_LOADED_AT)
