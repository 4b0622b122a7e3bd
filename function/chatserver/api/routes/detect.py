"""POST /detect-language: which language a recording is in, from its first speech (as /transcribe)."""

import logging
from typing import Annotated, BinaryIO

from fastapi import APIRouter, File, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ...core.errors import ACCEPTED_FORMATS
from ...speech.audio import SAMPLE_RATE
from ...speech.engines import LanguageGuess
from ...speech.languages import LANGUAGES
from ...speech.service import TranscriptionService
from ..dependencies import ServiceDep, SlotsDep
from ..openapi import BODY_ERRORS, COMMON_ERRORS, error_responses

logger = logging.getLogger(__name__)

router = APIRouter()

CANDIDATES = 4


class LanguageCandidate(BaseModel):
    language: str = Field(description="ISO 639-1 code (or Whisper's code where there is none).")
    name: str = Field(description="The language's English name.")
    probability: float = Field(ge=0, le=1)


class DetectedLanguage(LanguageCandidate):
    """The most likely language, and the next ones."""

    candidates: list[LanguageCandidate] = Field(description=f"The next {CANDIDATES}, most likely first.")


def _candidate(guess: LanguageGuess) -> LanguageCandidate:
    name = LANGUAGES.get(guess.code, guess.code)
    return LanguageCandidate(language=guess.code, name=name.title(), probability=round(guess.probability, 4))


def detect_language(service: TranscriptionService, audio: BinaryIO) -> DetectedLanguage:
    """Decoded under the same limits as a transcription, detected where /transcribe detects; blocking."""
    samples = service.decode(audio)
    guesses = service.detect_language(samples)
    best, *rest = (_candidate(g) for g in guesses[: CANDIDATES + 1])
    logger.info(
        "detected language %s (p=%.2f) in %.1f s of audio",
        best.language,
        best.probability,
        samples.size / SAMPLE_RATE,
    )
    return DetectedLanguage(**best.model_dump(), candidates=rest)


@router.post(
    "/detect-language",
    responses=error_responses(
        *COMMON_ERRORS,
        *BODY_ERRORS,
        401,
        415,
        507,
        descriptions={400: "Empty file.", 415: f"Not decodable as audio. Accepted: {ACCEPTED_FORMATS}."},
    ),
    summary="Detect the spoken language",
)
async def detect(
    file: Annotated[UploadFile, File(description=f"The recording: {ACCEPTED_FORMATS}.")],
    service: ServiceDep,
    slots: SlotsDep,
) -> DetectedLanguage:
    """The most likely language of the recording's first speech, as /transcribe detects it when no
    language is given (code, English name, probability), and the next four candidates."""
    # One encoder pass on the CPU: it takes a transcription slot like any transcription.
    async with slots.hold():
        return await run_in_threadpool(detect_language, service, file.file)
