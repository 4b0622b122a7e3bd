"""Engine selection: the rest of the service sees only the ``Engine`` interface."""

import logging
import os
import time
from functools import lru_cache
from pathlib import Path

from ...core.settings import EngineName, Settings
from . import models
from .base import Engine, LanguageGuess, Task, TranscribeOptions, WindowRule

__all__ = ["Engine", "LanguageGuess", "Task", "TranscribeOptions", "load_engine"]

logger = logging.getLogger(__name__)


def cpu_threads(settings: Settings) -> int:
    """Threads per transcription: the setting, or the measured best for the engine."""
    if settings.cpu_threads:
        return settings.cpu_threads
    if settings.engine == "faster-whisper":
        # With windows sized to the speech, the decoder is two thirds of the work, and
        # CTranslate2's decoder ran 25-30% faster on one thread than on two (its per-token
        # steps are too small to split); a clip under 15 s took 0.8x the time on one thread,
        # a 63 s recording 0.76x. More cores serve more jobs (CHATSERVER_MAX_CONCURRENT_JOBS).
        return 1
    # torch: share the cores between the jobs that may run at once (not measured further).
    return max(1, len(os.sched_getaffinity(0)) // settings.max_concurrent_jobs)


def window_rule(settings: Settings) -> WindowRule:
    """The sized window's rule from the settings (faster-whisper)."""
    return WindowRule(
        settings.sized_window, settings.window_min_s, settings.window_margin_s, settings.window_decoder_min_s
    )


def load_engine(settings: Settings) -> Engine:
    """The engine for these settings, loaded once per process and shared by every caller."""
    return _load(
        settings.engine,
        settings.model,
        settings.model_dir,
        settings.compute_type,
        cpu_threads(settings),
        settings.max_concurrent_jobs,
        window_rule(settings),
    )


@lru_cache(maxsize=4)
def _load(
    engine: EngineName,
    model: str,
    model_dir: Path,
    compute_type: str,
    threads: int,
    workers: int,
    window: WindowRule,
) -> Engine:
    started = time.perf_counter()
    resolved = models.resolve(model, engine, model_dir)
    loaded: Engine
    if engine == "openai-whisper":
        from .openai import OpenAIWhisperEngine

        loaded = OpenAIWhisperEngine(resolved, cpu_threads=threads, download_root=model_dir)
    else:
        from .faster import FasterWhisperEngine

        loaded = FasterWhisperEngine(
            resolved,
            compute_type=compute_type,
            cpu_threads=threads,
            workers=workers,
            download_root=model_dir,
            window=window,
        )
    loaded_at = time.perf_counter()
    # What the first transcription would pay once (buffers, kernel choice, lazy loading) is
    # paid here, in the process that loads the model: Lambda's init, uvicorn before it listens.
    loaded.warm_up()
    logger.info(
        "loaded engine %s model %s (%s) with %d threads in %.2f s, warmed up in %.2f s",
        engine,
        resolved.name,
        resolved.location,
        threads,
        loaded_at - started,
        time.perf_counter() - loaded_at,
    )
    return loaded
