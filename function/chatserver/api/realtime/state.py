"""What a live session's two tasks share: the reader (``session.py``) and the decoder
(``transcriber.py``).

The reader owns this state and writes the audio, the open turn and the configuration; the
decoder reads them, takes the committed turns off ``finals`` in order, and says while a final
decode runs and which provisional decode to stop. Both tasks run on one event loop, so no lock
is needed: each reads and writes between awaits.
"""

import threading
from collections import deque
from dataclasses import dataclass, field

import anyio

from .config import SessionConfig
from .decoding import Decodes, Turn
from .turns import InputBuffer


@dataclass(eq=False)
class SessionState:
    id: str  # the session's id, for the log lines of both tasks
    decodes: Decodes  # the session's decode runner; ``decodes.closed`` ends every decode
    config: SessionConfig = field(default_factory=SessionConfig)
    buffer: InputBuffer = field(default_factory=InputBuffer)
    item_id: str | None = None  # the open turn's item: speech started, or audio appended
    turn_start: int | None = None  # where the open turn begins (server VAD)
    finals: deque[Turn] = field(default_factory=deque)  # committed turns waiting for their text
    final_running: bool = False  # a final decode runs: the client waits for it, it is not idle
    # Set by the reader when anything the decoder waits on changed; the decoder renews it.
    wake: anyio.Event = field(default_factory=anyio.Event)
    # The running provisional decode's turn and stop flag (transcriber.py), if one runs.
    provisional_stop: tuple[str | None, threading.Event] | None = None
    # How far the audio is ahead of real time: each append adds its length, time takes it
    # away. A recording streamed faster than it plays gets no provisional words.
    lead_s: float = 0.0

    def stop_provisional(self) -> None:
        """The open turn ended (committed or cleared): its provisional decode stops."""
        if self.provisional_stop is not None:
            self.provisional_stop[1].set()
