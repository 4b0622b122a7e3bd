"""POST /transcribe: one recording in, its words out, synchronously."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response

from ..errors import ACCEPTED_FORMATS
from ..transcript import (
    ResponseFormat,
    TranscriptionResponse,
    VerboseTranscriptionResponse,
    to_response,
    to_srt,
    to_vtt,
)
from .dependencies import ServiceDep, SlotsDep
from .running import transcribe_upload

router = APIRouter()

_ERRORS = {
    400: {"description": "Empty file, unknown language or invalid option."},
    413: {"description": "Upload over the size limit, or audio over the duration limit."},
    415: {"description": f"Not decodable as audio. Accepted: {ACCEPTED_FORMATS}."},
    422: {"description": "Missing field, or the decoder ran out of time."},
    503: {"description": "All transcription slots busy; see Retry-After."},
    507: {"description": "No temporary disk space left."},
}


@router.post(
    "/transcribe",
    response_model=TranscriptionResponse | VerboseTranscriptionResponse,
    responses=_ERRORS,
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
) -> TranscriptionResponse | Response:
    options = service.options(language)
    transcript = await transcribe_upload(request, slots, service, file.file, options)
    match response_format:
        case ResponseFormat.text:
            return PlainTextResponse(transcript.text)
        case ResponseFormat.srt:
            return PlainTextResponse(to_srt(transcript))
        case ResponseFormat.vtt:
            return PlainTextResponse(to_vtt(transcript), media_type="text/vtt")
        case _:
            return to_response(transcript, verbose=response_format is ResponseFormat.verbose_json)
