"""OpenAI's audio API: ``/v1/audio/transcriptions``, ``/v1/audio/translations`` and ``/v1/models``,
so that code written for OpenAI's SDK runs unchanged with ``base_url=<server>/v1``."""

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response

from ...core.errors import ACCEPTED_FORMATS, InvalidOption, ModelNotFound, UnknownModel
from ...speech.engines import Task
from ...speech.service import TranscriptionService
from ...speech.transcript import Transcript, render_text
from ..dependencies import ServiceDep, SlotsDep
from ..openai_schemas import (
    OPENAI_PREFIX,
    WHISPER_1,
    Granularity,
    Model,
    ModelList,
    OpenAIErrorBody,
    OpenAIResponseFormat,
    Transcription,
    VerboseTranscription,
    verbose,
)
from ..openapi import BODY_ERRORS, COMMON_ERRORS, error_responses, text_content
from ..options import MAX_PROMPT_CHARS, request_options
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
    descriptions={400: "Unknown model or language, empty file, or options that do not go together."},
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
FormatField = Annotated[OpenAIResponseFormat, Form(description="How the transcript is returned.")]
TemperatureField = Annotated[
    float,
    Form(ge=0, le=1, description="0: Whisper's own schedule, raised on failed windows; else that one."),
]


def model_names(service: TranscriptionService) -> list[str]:
    return [service.engine.model, WHISPER_1]


def _check_model(service: TranscriptionService, model: str) -> None:
    if model not in model_names(service):
        raise UnknownModel(model, model_names(service))


def _render(
    transcript: Transcript, response_format: OpenAIResponseFormat, task: Task, words: bool
) -> Transcription | VerboseTranscription | Response:
    if rendered := render_text(transcript, response_format):
        body, media_type = rendered
        return PlainTextResponse(body, media_type=media_type)
    if response_format is OpenAIResponseFormat.verbose_json:
        return verbose(transcript, task.value, words=words)
    return Transcription(text=transcript.text)


@router.post(
    "/audio/transcriptions",
    response_model=Transcription | VerboseTranscription,
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
    language: Annotated[
        str | None, Form(description="ISO 639-1 code or Whisper language name; omit to detect.")
    ] = None,
    prompt: PromptField = None,
    response_format: FormatField = OpenAIResponseFormat.json,
    temperature: TemperatureField = 0.0,
    timestamp_granularities: Annotated[
        list[Granularity] | None,
        Form(
            alias="timestamp_granularities[]",
            description="With verbose_json: 'segment' (always given) and/or 'word'.",
        ),
    ] = None,
    stream: Annotated[
        bool, Form(description="Answer as server-sent events; response_format is then not used.")
    ] = False,
) -> Transcription | VerboseTranscription | Response:
    _check_model(service, model)
    words = Granularity.word in (timestamp_granularities or ())
    if words and response_format is not OpenAIResponseFormat.verbose_json and not stream:
        raise InvalidOption(
            "timestamp_granularities[]=word needs response_format=verbose_json, as with OpenAI's API."
        )
    options = request_options(
        service,
        language,
        prompt=prompt,
        temperature=temperature or None,
        word_timestamps=words and not stream,
    )
    if stream:
        return await stream_transcription(request, slots, service, file.file, options)
    transcript = await transcribe_upload(request, slots, service, file.file, options)
    return _render(transcript, response_format, Task.transcribe, words)


@router.post(
    "/audio/translations",
    response_model=Transcription | VerboseTranscription,
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
    response_format: FormatField = OpenAIResponseFormat.json,
    temperature: TemperatureField = 0.0,
) -> Transcription | VerboseTranscription | Response:
    _check_model(service, model)
    options = request_options(
        service, None, task=Task.translate, prompt=prompt, temperature=temperature or None
    )
    transcript = await transcribe_upload(request, slots, service, file.file, options)
    return _render(transcript, response_format, Task.translate, words=False)


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
