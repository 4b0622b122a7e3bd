"""Live dictation's test client: recordings as PCM16 at 24 kHz, built in the run from
../shared/audio, streamed through the real ``openai`` SDK's realtime client, every server
event kept with the time it arrived."""

import base64
import io
import subprocess
import threading
import time
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from imageio_ffmpeg import get_ffmpeg_exe
from openai import OpenAI

from tests.support.corpus import Clip

RATE = 24_000
BYTES_PER_SECOND = RATE * 2
TRANSCRIPTION = "transcription"


def pcm24(clip: Clip) -> bytes:
    """A clip as the Realtime API takes it: PCM16 mono 24 kHz little-endian, decoded by FFmpeg."""
    command = [
        get_ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(clip.path),
        "-ac",
        "1",
        "-ar",
        str(RATE),
    ]
    return subprocess.run([*command, "-f", "s16le", "-"], capture_output=True, check=True, timeout=60).stdout


def silence(seconds: float) -> bytes:
    return b"\0\0" * round(seconds * RATE)


@dataclass(frozen=True)
class Speech:
    pcm: bytes
    reference: str
    turns: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND


def sentences(clips: Sequence[Clip], gap_s: float = 1.5, lead_s: float = 0.5) -> Speech:
    """The clips one after another, ``gap_s`` of silence after each, ``lead_s`` before the first."""
    pcm = silence(lead_s) + b"".join(pcm24(c) + silence(gap_s) for c in clips)
    return Speech(pcm, " ".join(c.reference for c in clips), len(clips))


def wav(pcm: bytes) -> bytes:
    """The same audio as a WAV file, for POST /transcribe."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(pcm)
    return out.getvalue()


@dataclass
class Received:
    at: float  # time.monotonic() when it arrived
    type: str
    data: dict[str, Any]
    parsed: Any  # the SDK's typed event


@dataclass
class Live:
    """One connection: ``events`` fills in as they arrive (a reader thread)."""

    connection: Any
    events: list[Received] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    close_error: BaseException | None = None

    def send(self, event: dict[str, Any]) -> None:
        self.connection.send(event)

    def update(self, **audio_input: Any) -> None:
        self.send(
            {"type": "session.update", "session": {"type": TRANSCRIPTION, "audio": {"input": audio_input}}}
        )

    def append(self, pcm: bytes) -> None:
        self.connection.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())

    def stream(self, pcm: bytes, chunk_s: float = 0.1, realtime: bool = True) -> float:
        """Appends ``pcm`` in pieces of ``chunk_s``, at real-time pace unless told otherwise;
        returns time.monotonic() at the start."""
        step = round(chunk_s * RATE) * 2
        started = time.monotonic()
        for offset in range(0, len(pcm), step):
            self.append(pcm[offset : offset + step])
            if realtime:
                time.sleep(max(0.0, started + (offset + step) / BYTES_PER_SECOND - time.monotonic()))
        return started

    def of_type(self, kind: str) -> list[Received]:
        return [e for e in list(self.events) if e.type == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(found := self.of_type(kind)) < count:
            if self.closed.is_set():
                raise AssertionError(f"closed before {count} {kind}: {self.types()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} {kind} in {timeout} s: {self.types()}")
            time.sleep(0.02)
        return found

    def types(self) -> list[str]:
        return [e.type for e in list(self.events)]

    def _read(self) -> None:
        try:
            for event in self.connection:
                data = event.model_dump(exclude_unset=True)  # as the server sent it
                self.events.append(Received(time.monotonic(), data["type"], data, event))
        except Exception as error:  # the close, kept for the test to inspect
            self.close_error = error
        finally:
            self.closed.set()


def sdk_client(url: str, key: str = "sk-local") -> OpenAI:
    return OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0)


@contextmanager
def live(url: str, key: str = "sk-local", **connect: Any) -> Iterator[Live]:
    """A transcription session through the SDK (``intent=transcription``), its events read as they come."""
    with sdk_client(url, key).realtime.connect(
        extra_query={"intent": TRANSCRIPTION}, **connect
    ) as connection:
        session = Live(connection)
        reader = threading.Thread(target=session._read, daemon=True)
        reader.start()
        session.wait_for("session.created", timeout=30)
        try:
            yield session
        finally:
            connection.close()
            reader.join(10)
