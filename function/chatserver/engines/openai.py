"""openai-whisper (PyTorch): the reference implementation, chosen with CHATSERVER_ENGINE."""

import threading
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..models import ResolvedModel
from ..transcript import Segment, Transcript
from .base import ProgressCallback, TranscribeOptions


class OpenAIWhisperEngine:
    name = "openai-whisper"

    def __init__(self, model: ResolvedModel, *, cpu_threads: int, download_root: Path) -> None:
        import torch
        import whisper

        torch.set_num_threads(cpu_threads)
        self.model = model.name
        self.multilingual = model.multilingual
        self._model = whisper.load_model(model.location, device="cpu", download_root=str(download_root))
        # transcribe() installs key/value-cache hooks on the shared modules for each call,
        # so two calls at once would corrupt each other: one at a time.
        self._lock = threading.Lock()

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
    ) -> Transcript:
        with self._lock:
            result = self._model.transcribe(
                # torch.from_numpy wants a writable array; decoded samples are a read-only view.
                audio if audio.flags.writeable else audio.copy(),
                language=options.language,
                beam_size=options.beam_size,
                fp16=False,
                verbose=None,
            )
        if progress is not None:
            progress(1.0)
        segments = [Segment(start=s["start"], end=s["end"], text=s["text"]) for s in result["segments"]]
        return Transcript(
            text=result["text"].strip(),
            language=result["language"],
            duration=round(audio.size / SAMPLE_RATE, 3),
            segments=segments,
        )
