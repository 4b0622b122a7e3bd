"""Running one admitted transcription for an HTTP request: every route that transcribes calls this."""

from typing import BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..engines import TranscribeOptions
from ..engines.base import SegmentCallback
from ..service import TranscriptionService
from ..transcript import Transcript
from .slots import Slots


async def transcribe_upload(
    request: Request,
    slots: Slots,
    service: TranscriptionService,
    audio: BinaryIO,
    options: TranscribeOptions,
    on_segment: SegmentCallback | None = None,
) -> Transcript:
    """Wait for a slot (or get ``Busy`` at once), then transcribe in a worker thread."""
    async with slots.hold():
        return await run_in_threadpool(service.transcribe, audio, options, on_segment=on_segment)
