"""openai-whisper (PyTorch): the reference implementation, chosen with CHATSERVER_ENGINE."""

import threading
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..transcript import DecodedSegment, Transcript, Word
from .base import LanguageGuess, ProgressCallback, SegmentCallback, TranscribeOptions
from .models import ResolvedModel


class OpenAIWhisperEngine:
    name = "openai-whisper"

    def __init__(self, model: ResolvedModel, *, cpu_threads: int, download_root: Path) -> None:
        import torch
        import whisper

        torch.set_num_threads(cpu_threads)
        self.model = model.name
        self.multilingual = model.multilingual
        self.workers = 1  # one model, one call at a time (the lock below)
        self._model = whisper.load_model(model.location, device="cpu", download_root=str(download_root))
        # transcribe() installs key/value-cache hooks on the shared modules for each call,
        # so two calls at once would corrupt each other: one at a time.
        self._lock = threading.Lock()

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        extra = {} if options.temperature is None else {"temperature": options.temperature}
        with self._lock:
            result = self._model.transcribe(
                # torch.from_numpy wants a writable array; decoded samples are a read-only view.
                audio if audio.flags.writeable else audio.copy(),
                language=options.language,
                task=options.task.value,
                beam_size=options.beam_size,
                initial_prompt=options.prompt,
                word_timestamps=options.word_timestamps,
                fp16=False,
                verbose=None,
                **extra,
            )
        # openai-whisper returns every segment at the end, so streaming sees them all at once.
        segments = [_segment(s) for s in result["segments"]]
        for segment in segments:
            if on_segment is not None:
                on_segment(segment)
        if progress is not None:
            progress(1.0)
        return Transcript(
            text=result["text"].strip(),
            language=result["language"],
            duration=round(audio.size / SAMPLE_RATE, 3),
            segments=segments,
        )

    def detect_language(self, audio: np.ndarray) -> list[LanguageGuess]:
        import torch
        import whisper

        window = whisper.pad_or_trim(torch.from_numpy(np.array(audio, dtype=np.float32)))
        mel = whisper.log_mel_spectrogram(window, self._model.dims.n_mels)
        with self._lock:
            _, probabilities = self._model.detect_language(mel)
        ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
        return [LanguageGuess(code=code, probability=p) for code, p in ranked]

    def warm_up(self) -> None:
        """One encoder pass and one decoder step on a 30 s window: PyTorch's first-call costs."""
        tone = 0.05 * np.sin(np.arange(SAMPLE_RATE * 30) * (2 * np.pi * 220 / SAMPLE_RATE))
        self.detect_language(tone.astype(np.float32))


def _segment(raw: dict) -> DecodedSegment:
    words = None
    if "words" in raw:
        words = [
            Word(word=w["word"], start=w["start"], end=w["end"], probability=w["probability"])
            for w in raw["words"]
        ]
    return DecodedSegment(
        start=raw["start"],
        end=raw["end"],
        text=raw["text"],
        seek=raw["seek"],
        tokens=raw["tokens"],
        temperature=raw["temperature"],
        avg_logprob=raw["avg_logprob"],
        compression_ratio=raw["compression_ratio"],
        no_speech_prob=raw["no_speech_prob"],
        words=words,
    )
