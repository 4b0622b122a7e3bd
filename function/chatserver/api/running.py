"""Running one admitted transcription for an HTTP request: every route that transcribes calls this.

A request whose client leaves is forgotten: while it waits for a slot it leaves the line at
once; while it runs, the service stops at the next decoded segment and the slot is freed.
"""

import logging
import os
import threading
from pathlib import Path
from typing import BinaryIO

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..speech.engines import TranscribeOptions
from ..speech.engines.base import SegmentCallback
from ..speech.service import TranscriptionService
from ..speech.transcript import DecodedSegment, Transcript
from .slots import Slots

logger = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client disconnected: what is left of its request is abandoned."""


async def transcribe_upload(
    request: Request,
    slots: Slots,
    service: TranscriptionService,
    audio: BinaryIO,
    options: TranscribeOptions,
    on_segment: SegmentCallback | None = None,
) -> Transcript:
    """Wait for a slot (or get ``Busy`` at once), then transcribe in a worker thread.

    Raises :class:`ClientGone` when the client disconnects first.
    """
    stop = threading.Event()  # read by the worker thread at each segment

    def checked(segment: DecodedSegment) -> None:
        if stop.is_set():
            raise ClientGone()
        if on_segment is not None:
            on_segment(segment)

    transcript: Transcript | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as watchers:
        work = anyio.CancelScope()
        watchers.start_soon(_watch_disconnect, request, stop, work)
        try:
            with work:
                async with slots.hold():
                    # A running thread cannot be cancelled: the cancel scope only takes
                    # effect when it returns, which ``checked`` makes it do at the next segment.
                    transcript = await run_in_threadpool(
                        service.transcribe, _source(audio), options, on_segment=checked
                    )
        except Exception as exc:
            # Raised after the task group, which would wrap it in an ExceptionGroup.
            failure = exc
        finally:
            watchers.cancel_scope.cancel()
    if failure is not None and not stop.is_set():
        raise failure
    if transcript is None or stop.is_set():
        # Only the disconnect watcher cancels the work, and it sets ``stop`` first.
        logger.info("client disconnected: transcription abandoned, its slot freed")
        raise ClientGone()
    return transcript


async def _watch_disconnect(request: Request, stop: threading.Event, work: anyio.CancelScope) -> None:
    # The body has been read by the time a route runs, so the next ASGI message is the
    # disconnect (uvicorn sends it when the socket closes; Mangum and the test client only
    # once the response is complete, when this watcher is already cancelled).
    while (await request.receive())["type"] != "http.disconnect":
        pass
    stop.set()
    work.cancel()


def _source(audio: BinaryIO) -> BinaryIO | Path:
    """The upload as a path when it is already a file on disk, so it is not written twice.

    Starlette spools uploads over 1 MB into an unnamed temporary file (in CHATSERVER_TMP_DIR,
    see create_app); FFmpeg reads it through /proc without a copy. The file goes when the
    upload is closed, on every path, even if the process is killed.
    """
    # SpooledTemporaryFile: on disk past max_size (Starlette reads the same attribute).
    rolled = getattr(audio, "_rolled", False)
    fds = Path("/proc") / str(os.getpid()) / "fd"
    if rolled and fds.is_dir():
        return fds / str(audio.fileno())
    return audio
