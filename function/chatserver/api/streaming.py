"""A transcription as server-sent events, the way OpenAI's SDK reads them: one
``transcript.text.delta`` per segment as soon as it is decoded, then one ``transcript.text.done``."""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import BinaryIO

from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel
from starlette.requests import Request

from ..core.errors import ChatServerError
from ..speech.engines import TranscribeOptions
from ..speech.service import TranscriptionService
from ..speech.transcript import DecodedSegment, Transcript
from .openai_schemas import TextDelta, TextDone, UsageDuration, openai_error
from .running import ClientGone, transcribe_upload
from .slots import Slots

logger = logging.getLogger(__name__)

_END = object()  # queued once the transcription has finished, whichever way


class StreamClosed(Exception):
    """Raised in the worker thread at the next segment once nobody reads the stream any more."""


async def stream_transcription(
    request: Request,
    slots: Slots,
    service: TranscriptionService,
    audio: BinaryIO,
    options: TranscribeOptions,
) -> EventSourceResponse:
    """Start the transcription and answer once its first segment is decoded, so that a refusal
    (busy, empty or undecodable audio) is still an HTTP error status and not a broken stream.
    By then the upload has been decoded whole, so FastAPI may close it once the route returns."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    closed = threading.Event()

    def on_segment(segment: DecodedSegment) -> None:  # in the worker thread
        if closed.is_set():
            raise StreamClosed()
        loop.call_soon_threadsafe(queue.put_nowait, segment.text)

    def finished(task: asyncio.Task[Transcript]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here so a dropped stream logs no "never retrieved"
        queue.put_nowait(_END)

    task = asyncio.create_task(transcribe_upload(request, slots, service, audio, options, on_segment))
    task.add_done_callback(finished)
    try:
        first = await queue.get()
    except asyncio.CancelledError:
        closed.set()
        raise
    if first is _END:
        task.result()  # raises the refusal, answered by the error handlers with its status
    return EventSourceResponse(
        _events(first, queue, task, closed),
        # Proxies must pass each event on as it comes rather than buffer the response.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(body: BaseModel) -> bytes:
    return format_sse_event(data_str=body.model_dump_json())


async def _events(
    first: object, queue: asyncio.Queue[object], task: asyncio.Task[Transcript], closed: threading.Event
) -> AsyncIterator[bytes]:
    item, sent_any = first, False
    try:
        while item is not _END:
            text = str(item)
            # The final text is stripped: strip the start of the first delta too, so that the
            # deltas joined are exactly the done event's text.
            yield _event(TextDelta(delta=text if sent_any else text.lstrip()))
            sent_any = True
            item = await queue.get()
        try:
            transcript = task.result()
        except ClientGone:
            return  # nobody is reading: running.py has logged it
        except ChatServerError as exc:
            # The status line is gone already: OpenAI's SDK raises an APIError on an event
            # that carries an error body.
            yield _event(openai_error(exc.status_code, exc.error_type, exc.message))
            return
        except Exception:
            logger.exception("transcription failed while streaming")
            yield _event(openai_error(500, "internal_error", "The server failed during the transcription."))
            return
        yield _event(TextDone(text=transcript.text, usage=UsageDuration.of(transcript)))
    finally:
        if not task.done():
            logger.info("stream closed by the client; the transcription stops at its next segment")
        closed.set()
