"""One live dictation session: client events in, OpenAI's server events out.

Two tasks make the session: the reader here (client events, audio, turn detection) and the
decoder (``transcriber.py``: provisional decodes of the open turn, final decodes of committed
turns, one at a time and in order). They share ``state.py``'s ``SessionState``, which the
reader owns; the decoder gets that state and the reader's ``send``, nothing else of the session.
When the client leaves, the reader ends, the ``closed`` flag of the state's decodes stops a
running decode at its next segment, and its slot is freed as the thread returns.
"""

import logging
import time
from typing import Literal

import anyio
import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...core.errors import ChatServerError
from ...core.settings import Settings
from ...speech.pcm import INPUT_BYTES_PER_SECOND, Pcm16Resampler
from ...speech.segmentation import StreamingSpeech
from ...speech.service import TranscriptionService
from ..slots import Slots
from . import server_events as out
from .config import ConfigRefused, apply_update, beta_session, ga_session
from .decoding import Decodes, Turn
from .errors import CommitEmpty, InvalidEvent
from .events import Append, BadEvent, Clear, ClientEvent, Commit, SessionUpdate, audio_bytes, parse_event
from .limits import AudioPace
from .state import SessionState
from .transcriber import Transcriber
from .turns import SpeechEnd, SpeechStart, TurnDetector, to_ms

logger = logging.getLogger(__name__)

MIN_COMMIT_S = 0.1  # OpenAI refuses a commit of less (input_audio_buffer_commit_empty)
Ending = Literal["client_left", "idle"]


class Session:
    def __init__(
        self, websocket: WebSocket, service: TranscriptionService, slots: Slots, settings: Settings
    ) -> None:
        self.websocket = websocket
        self.service = service
        self.settings = settings
        # What the decoder task shares with this one (state.py); this task owns and writes it.
        self.state = SessionState(id=out.new_id("sess"), decodes=Decodes(service, slots))
        self.pace = AudioPace(settings.realtime_max_speed, settings.realtime_burst_s)
        self._resampler = Pcm16Resampler()
        self._speech: StreamingSpeech | None = None
        self.detector: TurnDetector | None = None
        self._restart_detection()
        self.previous_item: str | None = None
        self._send_lock = anyio.Lock()
        self.audio_in_s = 0.0
        self._last_append = time.monotonic()
        self.process_s = 0.0  # resampling and VAD: CPU per audio second, for the log line

    @property
    def id(self) -> str:
        return self.state.id

    # --- the connection ------------------------------------------------------------------------
    async def run(self) -> Ending:
        await self.send(out.SessionCreated(session=ga_session(self.state.config, self.id)))
        ending: Ending = "client_left"
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(Transcriber(self.state, self.send, self.service, self.settings).run)
            try:
                ending = await self._read()
            except out.ClientLeft:
                pass
            finally:
                self.state.decodes.closed.set()  # before the cancel: a running decode stops now
                tasks.cancel_scope.cancel()
        return ending

    async def send(self, event: out.ServerEvent) -> None:
        async with self._send_lock:
            try:
                await self.websocket.send_text(event.model_dump_json())
            except (WebSocketDisconnect, OSError, RuntimeError) as gone:
                self.state.decodes.closed.set()
                raise out.ClientLeft() from gone

    async def send_error(
        self, error: ChatServerError, param: str | None = None, event_id: str | None = None
    ) -> None:
        logger.info("session %s: error event %s: %s", self.id, error.error_type, error.message)
        await self.send(out.ErrorEvent(error=out.error_detail(error, param, event_id)))

    async def _read(self) -> Ending:
        while True:
            await self.pace.wait()
            try:
                with anyio.fail_after(self.settings.realtime_idle_timeout_s):
                    message = await self.websocket.receive()
            except TimeoutError:
                if self.state.finals or self.state.final_running:
                    continue  # the client waits for a final text: it is not idle
                return "idle"
            if message["type"] == "websocket.disconnect":
                return "client_left"
            text = message.get("text")
            if text is None:
                await self.send_error(
                    InvalidEvent("Binary messages are not accepted: send JSON events as text.")
                )
                continue
            try:
                await self._handle(parse_event(text, self.settings.realtime_max_append_bytes))
            except BadEvent as bad:
                await self.send_error(bad.error, bad.param, bad.event_id)

    async def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, Append):
            await self._append(audio_bytes(event))
        elif isinstance(event, Commit):
            await self._client_commit(event.event_id)
        elif isinstance(event, Clear):
            self._clear()
            await self.send(out.Cleared())
        else:
            await self._update(
                event.session, beta=not isinstance(event, SessionUpdate), event_id=event.event_id
            )

    # --- configuration -------------------------------------------------------------------------
    async def _update(self, session: dict, *, beta: bool, event_id: str | None) -> None:
        try:
            config = apply_update(self.state.config, session, self.service, beta)
        except ConfigRefused as refused:
            await self.send_error(refused.error, refused.param, event_id)
            return
        changed = config.turn_detection != self.state.config.turn_detection
        self.state.config = config
        if changed:
            self._restart_detection()
        if beta:
            await self.send(out.TranscriptionSessionUpdated(session=beta_session(config, self.id)))
        else:
            await self.send(out.SessionUpdated(session=ga_session(config, self.id)))

    def _restart_detection(self) -> None:
        """Turn detection as configured, from the end of the audio so far; an open turn stays
        open (committed by the client, or by the next detected end of speech)."""
        vad = self.state.config.turn_detection
        self._speech = StreamingSpeech() if vad else None
        self.detector = TurnDetector(vad, origin=self.state.buffer.end) if vad else None
        if self.detector is not None and self.state.item_id is not None:
            self.detector.speaking = True

    # --- audio and turns ----------------------------------------------------------------------
    async def _append(self, pcm: bytes) -> None:
        if not pcm:
            return
        seconds = len(pcm) / INPUT_BYTES_PER_SECOND
        self.pace.spend(seconds)
        self.audio_in_s += seconds
        state = self.state
        now = time.monotonic()
        state.lead_s = max(0.0, state.lead_s - (now - self._last_append)) + seconds
        self._last_append = now
        samples, probabilities = await anyio.to_thread.run_sync(self._process, pcm)
        state.buffer.append(samples)
        if self.detector is None:
            if state.item_id is None:
                state.item_id = out.new_id("item")
        else:
            for change in self.detector.frames(probabilities):
                if isinstance(change, SpeechStart):
                    await self._speech_started(change.position)
                elif isinstance(change, SpeechEnd):
                    await self.send(
                        out.SpeechStopped(audio_end_ms=to_ms(change.position), item_id=self._item())
                    )
                    await self._commit(change.commit_at)
            if not self.detector.speaking:
                # Outside a turn only the prefix padding is kept, for the next one.
                state.buffer.drop_before(state.buffer.end - self._padding())
        if state.item_id is not None and state.buffer.seconds >= self.settings.realtime_max_turn_s:
            await self._cut_long_turn()
        state.wake.set()

    def _process(self, pcm: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Resampling and VAD, in a worker thread: a few ms a second of audio, off the event loop."""
        started = time.thread_time()
        samples = self._resampler.feed(pcm)
        probabilities = self._speech.feed(samples) if self._speech is not None else np.zeros(0)
        self.process_s += time.thread_time() - started
        return samples, probabilities

    def _padding(self) -> int:
        vad = self.state.config.turn_detection
        return round(vad.prefix_padding_ms * 16) if vad else 0

    async def _speech_started(self, position: int) -> None:
        state = self.state
        state.turn_start = max(state.buffer.start, position - self._padding())
        state.buffer.drop_before(state.turn_start)
        state.item_id = out.new_id("item")
        await self.send(out.SpeechStarted(audio_start_ms=to_ms(state.turn_start), item_id=state.item_id))

    async def _cut_long_turn(self) -> None:
        """A turn at the length limit is committed where it is; speech going on starts the next."""
        end = self.state.buffer.end
        speaking = self.detector is not None and self.detector.speaking
        logger.info("session %s: turn cut at its length limit (%.0f s)", self.id, self.state.buffer.seconds)
        if speaking:
            await self.send(out.SpeechStopped(audio_end_ms=to_ms(end), item_id=self._item()))
        await self._commit(end)
        if speaking:
            await self._speech_started(end)

    def _item(self) -> str:
        if self.state.item_id is None:
            self.state.item_id = out.new_id("item")
        return self.state.item_id

    async def _client_commit(self, event_id: str | None) -> None:
        if self.detector is None:
            # The resampler's last few samples belong to this turn: /transcribe would have them.
            self.state.buffer.append(self._resampler.flush())
        if self.state.buffer.seconds < MIN_COMMIT_S:
            await self.send_error(CommitEmpty(self.state.buffer.seconds), None, event_id)
            return
        if self.detector is not None:
            self.detector.speaking = False
        await self._commit(self.state.buffer.end)

    async def _commit(self, until: int) -> None:
        state = self.state
        item = self._item()
        turn = Turn(item, state.buffer.take(until))
        state.item_id = state.turn_start = None
        state.stop_provisional()
        await self.send(out.Committed(item_id=item, previous_item_id=self.previous_item))
        self.previous_item = item
        if state.config.transcription is not None:
            state.finals.append(turn)
        state.wake.set()

    def _clear(self) -> None:
        state = self.state
        state.stop_provisional()
        state.buffer.clear()
        self._resampler.flush()
        state.item_id = state.turn_start = None
        if self.detector is not None:
            self.detector.speaking = False
        state.wake.set()

    def summary(self) -> str:
        cpu = self.process_s / self.audio_in_s if self.audio_in_s else 0.0
        decodes = self.state.decodes
        return (
            f"{self.audio_in_s:.1f} s of audio, resampling and VAD {cpu * 1000:.1f} ms CPU per audio "
            f"second, decodes {decodes.engine_s:.2f} s for {decodes.audio_s:.1f} s of audio, "
            f"paced {self.pace.waited_s:.1f} s"
        )
