"""faster-whisper (CTranslate2): the default engine, int8 on CPU."""

import os
from pathlib import Path

import numpy as np

from ..models import ResolvedModel
from ..transcript import Segment, Transcript
from .base import ProgressCallback, TranscribeOptions


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(
        self,
        model: ResolvedModel,
        *,
        compute_type: str,
        cpu_threads: int,
        workers: int,
        download_root: Path,
    ) -> None:
        # onnxruntime, which runs the VAD model, otherwise starts Microsoft's telemetry: it leaves
        # a session file (.ses) in the temp dir and would send events wherever there is network.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        from faster_whisper import WhisperModel

        self.model = model.name
        self.multilingual = model.multilingual
        # num_workers lets that many threads transcribe at once on one copy of the weights.
        self._model = WhisperModel(
            model.location,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,
            download_root=str(download_root),
        )

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
    ) -> Transcript:
        pieces, info = self._model.transcribe(
            audio,
            language=options.language,
            beam_size=options.beam_size,
            vad_filter=options.vad_filter,
        )
        segments: list[Segment] = []
        # The segments come from a generator: decoding happens while it is consumed.
        for piece in pieces:
            segments.append(Segment(start=piece.start, end=piece.end, text=piece.text))
            if progress is not None and info.duration:
                progress(min(piece.end / info.duration, 1.0))
        return Transcript(
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            duration=round(info.duration, 3),
            segments=segments,
        )
