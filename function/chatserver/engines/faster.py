"""faster-whisper (CTranslate2): the default engine, int8 on CPU."""

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..models import ResolvedModel
from ..transcript import DecodedSegment, Transcript, Word
from .base import LanguageGuess, ProgressCallback, SegmentCallback, TranscribeOptions


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
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        extra = {} if options.temperature is None else {"temperature": options.temperature}
        pieces, info = self._model.transcribe(
            audio,
            language=options.language,
            task=options.task.value,
            beam_size=options.beam_size,
            vad_filter=options.vad_filter,
            initial_prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            **extra,
        )
        segments: list[DecodedSegment] = []
        # The segments come from a generator: decoding happens while it is consumed.
        for piece in pieces:
            segment = _segment(piece)
            segments.append(segment)
            if on_segment is not None:
                on_segment(segment)
            if progress is not None and info.duration:
                progress(min(piece.end / info.duration, 1.0))
        return Transcript(
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            duration=round(info.duration, 3),
            segments=segments,
        )

    def detect_language(self, audio: np.ndarray) -> list[LanguageGuess]:
        _, _, probabilities = self._model.detect_language(audio)
        return [LanguageGuess(code=code, probability=p) for code, p in probabilities]


def _segment(piece: Any) -> DecodedSegment:
    words = None
    if piece.words is not None:
        words = [Word(word=w.word, start=w.start, end=w.end, probability=w.probability) for w in piece.words]
    return DecodedSegment(
        start=piece.start,
        end=piece.end,
        text=piece.text,
        seek=piece.seek,
        tokens=list(piece.tokens),
        temperature=piece.temperature or 0.0,
        avg_logprob=piece.avg_logprob,
        compression_ratio=piece.compression_ratio,
        no_speech_prob=piece.no_speech_prob,
        words=words,
    )
