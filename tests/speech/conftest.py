"""Every clip of ../shared/audio and ../shared/commands, transcribed once per run and shared.

The service (the defaults) transcribes every clip with its language; the bare engine
(faster-whisper's own ``transcribe``: 30 s window, beam 5, Whisper's fallbacks, the same int8
weights, the language given) transcribes the clips up to 15 s, the voice notes that the
service's accuracy is held against (test_voice_notes.py). test_longform.py compares joined
recordings with the service's clips one by one. The bare engine runs beside the service, one
thread per call (the service's own setting: CTranslate2's decoder is faster on one thread than on
two, README): about 5 minutes on 2 cores against 9 one after the other, so the tests that ask
for it carry a longer timeout than the suite's 300 s.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from faster_whisper import WhisperModel

from chatserver.core.settings import Settings
from chatserver.speech.audio import decode, ffmpeg_executable
from chatserver.speech.engines import load_engine, models
from chatserver.speech.service import TranscriptionService
from chatserver.speech.transcript import Transcript
from tests.support.corpus import COMMANDS, MANIFEST, Clip

VOICE_NOTE_S = 15.0  # issue 18's clips: up to 15 s
# For the tests that ask for ``transcribed``: the first of them waits for every clip.
TRANSCRIBED_TIMEOUT = pytest.mark.timeout(2400)


def key(item: Clip) -> str:
    """A clip's name across both sets (the file names alone repeat between languages)."""
    return f"{item.path.parent.parent.name}/{item.path.parent.name}/{item.path.name}"


CLIPS = [c for c in MANIFEST if not c.path.name.startswith("long-")] + COMMANDS
VOICE_NOTES = [c for c in CLIPS if c.duration <= VOICE_NOTE_S]


@dataclass
class Transcribed:
    samples: dict[str, np.ndarray]
    service: dict[str, Transcript]
    bare: dict[str, str]  # the voice notes only
    # The voice notes that the sized window handed to the 30 s window, decoded twice.
    decoded_twice: list[str] = field(default_factory=list)


class _Retries(logging.Handler):
    """The engine's own log line each time the sized window hands a piece to the 30 s window."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "full window instead" in record.getMessage():
            self.seen.append(record.getMessage())


def bare_engine(settings: Settings, workers: int) -> WhisperModel:
    """What anyone calling faster-whisper directly gets, with the same weights and precision as
    the service; one thread per call, as it runs beside the service (the words do not depend on it)."""
    resolved = models.resolve(settings.model, "faster-whisper", settings.model_dir)
    return WhisperModel(
        resolved.location,
        device="cpu",
        compute_type=settings.compute_type,
        cpu_threads=1,
        num_workers=workers,
    )


def _bare_text(bare: WhisperModel, item: Clip, samples: np.ndarray, beam_size: int) -> str:
    segments, _ = bare.transcribe(samples, language=item.language, beam_size=beam_size)
    return "".join(s.text for s in segments).strip()


@pytest.fixture(scope="session")
def clip_samples() -> dict[str, np.ndarray]:
    """Every clip decoded as the service decodes an upload, by ``key``."""
    ffmpeg = ffmpeg_executable(None)
    return {key(c): decode(c.path, ffmpeg=ffmpeg, timeout_s=60, max_seconds=600) for c in CLIPS}


@pytest.fixture(scope="session")
def transcribed(tmp_path_factory: pytest.TempPathFactory, clip_samples: dict[str, np.ndarray]) -> Transcribed:
    # The engine budget counts wall seconds, and here the service shares the two cores with the
    # bare engine's two threads: a hard note (a language Whisper base hardly knows, every
    # fallback of the 30 s window) ran past the 30 s floor on a loaded machine. What is measured
    # here is words; the budget has its own tests (test_compute_bounds.py).
    settings = Settings(tmp_dir=tmp_path_factory.mktemp("service-tmp"), engine_budget_floor_s=600)
    service = TranscriptionService(settings, load_engine(settings))
    samples = clip_samples
    result = Transcribed(samples, {}, {})
    # The bare engine meanwhile, on two threads (CTranslate2 lets go of the GIL): it has about
    # three times the service's work, and the two cores to itself once the service is done.
    workers = 2
    bare = bare_engine(settings, workers)
    beside = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bare")
    texts = {
        key(item): beside.submit(_bare_text, bare, item, samples[key(item)], settings.beam_size)
        for item in VOICE_NOTES
    }
    retries = _Retries()
    watched = logging.getLogger("chatserver.speech.engines.faster")
    watched.addHandler(retries)
    level = watched.level
    watched.setLevel(logging.INFO)
    try:
        for item in CLIPS:
            result.service[key(item)] = service.transcribe_samples(
                samples[key(item)], service.options(item.language)
            )
            if item.duration <= VOICE_NOTE_S and retries.seen:
                result.decoded_twice.append(key(item))
            retries.seen.clear()
    finally:
        watched.removeHandler(retries)
        watched.setLevel(level)
        beside.shutdown(wait=True)
    result.bare = {name: text.result() for name, text in texts.items()}
    return result
