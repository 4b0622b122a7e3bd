"""faster-whisper (CTranslate2): the default engine, int8 on CPU.

A piece shorter than 30 s is decoded first with an encoder window sized to it (``WindowRule``,
sized_window.py): the encoder's cost grows with the window, and Whisper pads every window to
30 s, so a 3 s voice note would otherwise pay for 30 s. There it is decoded once, at temperature
0, within a token allowance, as one segment without timestamp tokens where it is one run of
speech. Where that decode shows Whisper's signs of going wrong (its own thresholds, a phrase said
over and over, the allowance used up), or Whisper wants a second window, the piece is decoded
again as the bare engine decodes it: the 30 s window, timestamps, Whisper's fallbacks.
"""

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# onnxruntime, which runs the VAD model, otherwise starts Microsoft's telemetry: it leaves a
# session file (.ses) in the temp dir and would send events wherever there is network.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import ctranslate2
from faster_whisper import WhisperModel

from ..transcript import DecodedSegment, Transcript, Word
from .base import (
    FULL_WINDOW_FRAMES,
    LanguageGuess,
    ProgressCallback,
    SegmentCallback,
    TranscribeOptions,
    WindowRule,
)
from .decode_checks import loop_phrase, max_new_tokens, past, suspicious, token_allowance, tokens, used_up
from .models import ResolvedModel
from .sized_window import Encodings, SizedWindow, TailWindow, silent_window

logger = logging.getLogger(__name__)

# A detected language less likely than this is detected again in a wider window (detect_language).
_UNSURE_LANGUAGE = 0.5


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
        window: WindowRule | None = None,
    ) -> None:
        self.model = model.name
        self.multilingual = model.multilingual
        self.workers = workers
        self.window = window or WindowRule()
        self._encodings = Encodings(size=2 * workers)
        # num_workers lets that many threads transcribe at once on one copy of the weights.
        self._model = WhisperModel(
            model.location,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,
            download_root=str(download_root),
        )
        # Only where a window can be shorter than the decoder's minimum (the defaults: 5 s and 15 s).
        self._silence = (
            silent_window(self._model, download_root, _weights_key(model.location, compute_type))
            if self.window.silent_tail
            else None
        )

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        frames = self.window.frames(audio.size, note=options.note)
        full = options.model_copy(update={"one_segment": False})
        # Word timestamps align tokens against the whole 30 s window, and language detection
        # belongs to the full window too: only pieces without either are sized.
        sized = frames < FULL_WINDOW_FRAMES and not options.word_timestamps and options.language is not None
        first, looks_right = self._try_sized(audio, options, frames) if sized else (None, False)
        if first is None:
            # The 30 s window decodes as the bare engine does: timestamps, Whisper's fallbacks.
            return self._decode(self._model, audio, full, progress, on_segment)
        if not looks_right:
            # Its segments are handed on once chosen, so a budget or a client gone stops it only after it.
            second = self._decode(self._model, audio, full, progress, None)
            first = self._likelier(first, second, token_allowance(audio.size))
        for segment in first.segments:
            if on_segment is not None:
                on_segment(segment)
        if progress is not None:
            progress(1.0)
        return first

    def _try_sized(
        self, audio: np.ndarray, options: TranscribeOptions, frames: int
    ) -> tuple[Transcript | None, bool]:
        """The piece decoded in a window of ``frames`` (None: Whisper wants a second window), and
        whether it looks right; where not, the full window decides.

        One temperature only: a window that would need Whisper's fallbacks goes to the full
        window (which has them) instead of paying for them here first.
        """
        temperature = 0.0 if options.temperature is None else options.temperature
        # A caller's text prompt lengthens the prompt: then Whisper's own bound applies.
        allowance = None if options.prompt else token_allowance(audio.size)
        try:
            transcript = self._decode(
                self._sized(frames),
                audio,
                options.model_copy(update={"temperature": temperature}),
                None,
                None,
                max_new_tokens(allowance, options),
            )
        except TailWindow:
            logger.info("sized window of %d frames left a tail: full window instead", frames)
            return None, False
        # A decode that used its whole allowance was cut inside a loop, where Whisper's own
        # checks would have seen it: the full window decides, with them.
        if suspicious(transcript.segments) or used_up(transcript, allowance):
            logger.info("sized window of %d frames looked wrong: full window instead", frames)
            return transcript, False
        return transcript, True

    def _likelier(self, first: Transcript, second: Transcript, allowance: int | None) -> Transcript:
        """The 30 s window's decode, unless it shows the signs too.

        Where it does, every temperature of Whisper's fallbacks failed its thresholds, or a
        sample ran past what the note can hold (224 tokens of symbols for a 2.7 s Mongolian
        command): its text is one draw among many, as likely wrong as the sized window's, and
        it changes from run to run (on the 17 of 355 notes decoded twice, 12 draws each: the
        bare engine 29-100 edits on their 60 words, this rule 29-30). The sized window's decode
        at temperature 0 stands then, the same every time; where it was stopped inside a loop
        at its allowance, as the loop's first pass.
        """
        if not suspicious(second.segments) and not past(second, allowance):
            return second
        logger.info("the 30 s window looked wrong too (%d tokens): the sized window's stands", tokens(second))
        # The segments' own text: Whisper's first token carries the leading space (first.text is stripped).
        phrase = loop_phrase("".join(s.text for s in first.segments)) if used_up(first, allowance) else None
        if phrase is None:
            return first
        ids = self._model.hf_tokenizer.encode(phrase, add_special_tokens=False).ids
        segment = first.segments[0].model_copy(
            update={"text": phrase, "tokens": ids, "end": first.segments[-1].end, "words": None}
        )
        return Transcript.of_segments([segment], first.language, first.duration)

    @staticmethod
    def _decode(
        model: Any,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None,
        on_segment: SegmentCallback | None,
        max_new_tokens: int | None = None,
    ) -> Transcript:
        extra = {} if options.temperature is None else {"temperature": options.temperature}
        pieces, info = model.transcribe(
            audio,
            language=options.language,
            task=options.task.value,
            beam_size=options.beam_size,
            vad_filter=options.vad_filter,
            initial_prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            without_timestamps=options.one_segment,
            max_new_tokens=max_new_tokens,
            **extra,
        )
        segments: list[DecodedSegment] = []
        # The segments come from a generator: decoding happens while it is consumed.
        for piece in pieces:
            # A padded window can place a timestamp past the audio; clamp it onto the piece.
            segment = _segment(piece, info.duration)
            segments.append(segment)
            if on_segment is not None:
                on_segment(segment)
            if progress is not None and info.duration:
                progress(min(piece.end / info.duration, 1.0))
        return Transcript.of_segments(segments, info.language, info.duration)

    def detect_language(self, audio: np.ndarray) -> list[LanguageGuess]:
        # On a window sized to the audio too: over the 34 recordings of ../shared/audio (their
        # first speech) it found the same language as the 30 s window on all 34, in 0.28x the time.
        frames = self.window.frames(min(audio.size, FULL_WINDOW_FRAMES * 160))
        if frames >= FULL_WINDOW_FRAMES:
            probabilities = self._model.detect_language(audio)[2]
        else:
            probabilities = self._sized(frames).detect_language_of(audio)
            # A window shorter than the decoder's is less often right on a few words (the 355
            # notes of issue 18: 5 s 286 right, 15 s 292, the bare engine's 30 s 297). Where its
            # best guess is less likely than not, a window of the decoder's length decides (293);
            # the decoding still takes the short window's encoding.
            wider = self.window.decoder_frames
            if probabilities[0][1] < _UNSURE_LANGUAGE and frames < wider:
                logger.info("language %s at %.2f in %d frames: again in %d", *probabilities[0], frames, wider)
                probabilities = self._sized(wider).detect_language_of(audio, keep=False)
        return [LanguageGuess(code=code, probability=p) for code, p in probabilities]

    def _sized(self, frames: int) -> SizedWindow:
        return SizedWindow(self._model, frames, self._encodings, self._silence, self.window.decoder_frames)

    def warm_up(self) -> None:
        """Pay at load what the first request would: buffers, kernel choice, lazy loading.

        A voice note's path only: language detection and decoding in a sized window, on every
        worker (CTranslate2 replica) at once, so every replica gets some of the calls. Not the
        30 s window (fallbacks, word timestamps): on one thread it took 1.2 s at start-up to
        save its first use 0.1-0.2 s.
        """
        tone = (0.05 * np.sin(np.arange(16_000 * 3) * (2 * np.pi * 220 / 16_000))).astype(np.float32)
        frames = self.window.frames(tone.size)
        options = TranscribeOptions(language="en", beam_size=5, temperature=0.0)

        def voice_note(_: int) -> None:
            self._sized(frames).detect_language_of(tone)
            self._decode(self._sized(frames), tone, options, None, None)

        # In threads, as requests run (never in the loading one): the malloc arenas they warm
        # are the ones the first requests' threads take over (inline, the first request took
        # 0.63 s against 0.35 s for the second).
        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(voice_note, range(self.workers)))


def _weights_key(location: str, compute_type: str) -> str:
    """Names the weights, precision and CTranslate2 release an encoding was computed with."""
    model_bin = Path(location) / "model.bin"
    try:
        found = model_bin.stat()
        stamp = f"{found.st_size}:{found.st_mtime_ns}"
    except OSError:  # an official name, or a single-file model
        stamp = ""
    text = f"{Path(location).resolve()}|{stamp}|{compute_type}|{ctranslate2.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _segment(piece: Any, duration: float) -> DecodedSegment:
    words = None
    if piece.words is not None:
        words = [Word(word=w.word, start=w.start, end=w.end, probability=w.probability) for w in piece.words]
    end = min(piece.end, duration)
    return DecodedSegment(
        start=min(piece.start, end),
        end=end,
        text=piece.text,
        seek=piece.seek,
        tokens=list(piece.tokens),
        temperature=piece.temperature or 0.0,
        avg_logprob=piece.avg_logprob,
        compression_ratio=piece.compression_ratio,
        no_speech_prob=piece.no_speech_prob,
        words=words,
    )
