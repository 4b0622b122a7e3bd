"""POST /transcribe: one recording in, its words out, synchronously."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response

from ...core.errors import ACCEPTED_FORMATS, InvalidOption
from ...speech.engines import Task
from ...speech.options import MAX_PROMPT_CHARS, request_options
from ...speech.transcript import (
    ResponseFormat,
    TranscriptionResponse,
    TranscriptionWithWords,
    VerboseTranscriptionResponse,
    VerboseTranscriptionWithWords,
    render_text,
    to_response,
)
from ..dependencies import ServiceDep, SlotsDep
from ..openapi import BODY_ERRORS, COMMON_ERRORS, error_responses, transcription_responses
from ..running import transcribe_upload

router = APIRouter()

_ERRORS = error_responses(
    *COMMON_ERRORS,
    *BODY_ERRORS,
    401,
    415,
    507,
    descriptions={
        400: "Empty file, unknown language or options that do not go together.",
        415: f"Not decodable as audio. Accepted: {ACCEPTED_FORMATS}.",
    },
)


@router.post(
    "/transcribe",
    response_model=(
        TranscriptionResponse
        | VerboseTranscriptionResponse
        | TranscriptionWithWords
        | VerboseTranscriptionWithWords
    ),
    responses={**transcription_responses(), **_ERRORS},
    summary="Transcribe one recording",
)
async def transcribe(
    request: Request,
    file: Annotated[UploadFile, File(description=f"The recording: {ACCEPTED_FORMATS}.")],
    service: ServiceDep,
    slots: SlotsDep,
    language: Annotated[
        str | None,
        Form(description="Whisper language name or ISO code ('french', 'fr'); omit to detect."),
    ] = None,
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.json,
    # Every option below is optional: without them the request and the answer are the seed's.
    task: Annotated[
        Task, Form(description="transcribe, or translate into English (language: the spoken one).")
    ] = Task.transcribe,
    prompt: Annotated[
        str | None,
        Form(max_length=MAX_PROMPT_CHARS, description="Text in the audio's style, or words it contains."),
    ] = None,
    temperature: Annotated[
        float | None,
        Form(ge=0, le=1, description="One sampling temperature; omitted: Whisper's fallback schedule."),
    ] = None,
    word_timestamps: Annotated[
        bool, Form(description="Add 'words' (each with start and end) to json and verbose_json.")
    ] = False,
    vad_filter: Annotated[
        bool | None,
        Form(description="Drop silence with Silero VAD before decoding; omitted: the server's setting."),
    ] = None,
) -> TranscriptionResponse | Response:
    if word_timestamps and response_format not in (ResponseFormat.json, ResponseFormat.verbose_json):
        raise InvalidOption(
            f"word_timestamps=true needs response_format json or verbose_json, not {response_format.value}."
        )
    options = request_options(
        service,
        language,
        task=task,
        prompt=prompt,
        temperature=temperature,
        word_timestamps=word_timestamps,
        vad_filter=vad_filter,
    )
    transcript = await transcribe_upload(request, slots, service, file.file, options)
    if rendered := render_text(transcript, response_format):
        body, media_type = rendered
        return PlainTextResponse(body, media_type=media_type)
    return to_response(
        transcript, verbose=response_format is ResponseFormat.verbose_json, words=word_timestamps
    )
