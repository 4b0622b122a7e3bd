"""A session's decoder task: final decodes of committed turns first, in order; else, while a
turn is open, a provisional decode of it at most every ``realtime_partial_interval_s``."""

import contextlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable

import anyio

from ...core.errors import Busy, ChatServerError
from ...core.settings import Settings
from ...speech.audio import SAMPLE_RATE
from ...speech.engines import TranscribeOptions
from ...speech.service import TranscriptionService
from ...speech.transcript import Transcript
from . import server_events as out
from .decoding import Stopped, Turn, provisional_words
from .state import SessionState

logger = logging.getLogger(__name__)

# A provisional decode needs this much of the turn: on less, Whisper tends to invent a word.
MIN_PROVISIONAL_S = 1.0
# Audio further ahead of real time than this is a recording sent faster than it plays, not
# someone speaking: its turns get their final text only, and the decodes are not shared with
# provisional ones (which would also delay each final by the piece they are decoding).
MAX_LEAD_S = 2.0


# How the decoder sends a server event: the session's ``send`` (one writer at a time; raises
# ``ClientLeft`` once the client is gone).
Send = Callable[[out.ServerEvent], Awaitable[None]]


class Transcriber:
    """The decoder of one session: it works on the state it shares with the session's reader
    (``state.py``) and never touches the connection: what it says goes through ``send``."""

    def __init__(
        self, state: SessionState, send: Send, service: TranscriptionService, settings: Settings
    ) -> None:
        self.state = state
        self.send = send
        self.service = service
        self.settings = settings
        self.language: str | None = None  # found by an earlier decode, for provisional ones
        self._next_provisional = 0.0
        self._decoded_through = -1  # the buffer's end at the last provisional decode
        self._sent_item: str | None = None  # the item whose words have been sent as deltas
        self._sent_words = 0

    async def run(self) -> None:
        with contextlib.suppress(out.ClientLeft):  # the reader sees the disconnect, ends the session
            await self._loop()

    async def _loop(self) -> None:
        state = self.state
        while not state.decodes.closed.is_set():
            if state.finals:
                await self._final(state.finals.popleft())
                continue
            wait = self._provisional_wait()
            if wait == 0:
                await self._provisional()
                continue
            with anyio.move_on_after(math.inf if wait is None else wait):
                await state.wake.wait()
            state.wake = anyio.Event()

    def _options(self, language: str | None) -> TranscribeOptions:
        """What POST /transcribe would use with this language and prompt."""
        transcription = self.state.config.transcription
        options = self.service.options(language)
        return options.model_copy(update={"prompt": transcription.prompt if transcription else None})

    # --- provisional ---------------------------------------------------------------------------
    def _provisional_wait(self) -> float | None:
        """Seconds until the next provisional decode; None: none until something changes."""
        state = self.state
        if state.config.transcription is None or state.item_id is None or state.lead_s > MAX_LEAD_S:
            return None
        start = state.turn_start if state.turn_start is not None else state.buffer.start
        if (
            state.buffer.end == self._decoded_through
            or (state.buffer.end - start) < MIN_PROVISIONAL_S * SAMPLE_RATE
        ):
            return None
        return max(0.0, self._next_provisional - time.monotonic())

    async def _provisional(self) -> None:
        state = self.state
        item = state.item_id
        start = state.turn_start if state.turn_start is not None else state.buffer.start
        samples = state.buffer.samples(start)
        self._decoded_through = state.buffer.end
        language = state.config.transcription.language if state.config.transcription else None
        # Greedy at one temperature: cheaper than the beam, and without Whisper's fallbacks (a
        # second of speech cut mid-word once took 1.6 s through them); the words are replaced
        # by the turn's final text anyway.
        options = self._options(language or self.language).model_copy(
            update={"beam_size": 1, "temperature": 0.0}
        )
        stop = threading.Event()
        started = time.monotonic()
        transcript: Transcript | None = None
        try:
            with _StopWhenTurnEnds(state, item, stop):
                transcript = await state.decodes.run(samples, options, wait=False, stop=stop)
        except Busy:
            logger.info("session %s: no free slot for a provisional decode; skipped", state.id)
        except Stopped:
            pass
        except ChatServerError as error:
            logger.info("session %s: provisional decode failed: %s", state.id, error.message)
        took = time.monotonic() - started
        # Never more than about a third of a core on provisional words, however long the turn.
        self._next_provisional = started + max(self.settings.realtime_partial_interval_s, 2 * took)
        if transcript is None or stop.is_set() or item != state.item_id:
            return
        self.language = self.language or transcript.language
        if item != self._sent_item:
            self._sent_item, self._sent_words = item, 0
        words = provisional_words(transcript.text, self._sent_words)
        if words:
            delta = (" " if self._sent_words else "") + " ".join(words)
            self._sent_words += len(words)
            await self.send(out.TranscriptDelta(item_id=item, delta=delta))

    # --- final ---------------------------------------------------------------------------------
    async def _final(self, turn: Turn) -> None:
        state = self.state
        language = state.config.transcription.language if state.config.transcription else None
        options = self._options(language)
        state.final_running = True
        try:
            transcript = await state.decodes.run(turn.samples, options, wait=True)
        except Stopped:
            return
        except Busy as busy:
            retry = self.settings.retry_after_s
            message = (
                f"{busy.message.split(';')[0]}: this turn was not transcribed; send its audio again "
                f"in {retry} s."
            )
            await self._failed(turn, out.error_detail(busy).model_copy(update={"message": message}))
            return
        except ChatServerError as error:  # compute_budget_exceeded
            await self._failed(turn, out.error_detail(error))
            return
        except Exception:
            logger.exception("session %s: the final decode of %s failed", state.id, turn.item_id)
            message = (
                f"The server failed while transcribing this turn; quote session {state.id} when reporting it."
            )
            await self._failed(
                turn, out.ErrorDetail(type="server_error", code="internal_error", message=message)
            )
            return
        finally:
            state.final_running = False
        self.language = self.language if language else transcript.language
        logger.info(
            "session %s: %s: %.2f s of audio transcribed (%s)",
            state.id,
            turn.item_id,
            turn.seconds,
            transcript.language,
        )
        usage = out.DurationUsage(seconds=round(turn.seconds, 3))
        await self.send(
            out.TranscriptCompleted(item_id=turn.item_id, transcript=transcript.text, usage=usage)
        )

    async def _failed(self, turn: Turn, detail: out.ErrorDetail) -> None:
        logger.info("session %s: %s not transcribed: %s", self.state.id, turn.item_id, detail.code)
        await self.send(out.TranscriptFailed(item_id=turn.item_id, error=detail))
        await self.send(out.ErrorEvent(error=detail))


class _StopWhenTurnEnds:
    """Stops a provisional decode (at its next segment) once its turn is committed or cleared,
    so that the turn's final decode is not kept waiting for words nobody will see."""

    def __init__(self, state: SessionState, item: str | None, stop: threading.Event) -> None:
        self.state, self.item, self.stop = state, item, stop

    def __enter__(self) -> None:
        self.state.provisional_stop = (self.item, self.stop)

    def __exit__(self, *exc: object) -> None:
        self.state.provisional_stop = None
