"""The one transcription service that the HTTP routes and the S3 job runner both call.

The pipeline: decode (as openai-whisper's ``load_audio`` does) -> cut at silences into pieces
of at most ``piece_max_s`` (segmentation.py) -> language detected once on the first speech,
when not given -> each piece transcribed on its own -> segments shifted onto the recording's
timeline. Non-speech is never decoded, memory is that of one piece whatever the duration, and
every transcription stops once it has used its engine-seconds budget.
"""

import contextvars
import functools
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..core.errors import UnsupportedLanguage
from ..core.settings import Settings
from .audio import SAMPLE_RATE, decode, ffmpeg_executable, save_stream, temporary_audio_path
from .budget import Budget
from .engines import Engine, LanguageGuess, TranscribeOptions, load_engine
from .engines.base import ProgressCallback, SegmentCallback
from .languages import to_language_code
from .segmentation import Span, SpeechDetection, cut_at_silences, group_runs, levels_db, speech_spans, widen
from .transcript import DecodedSegment, Transcript

logger = logging.getLogger(__name__)


class TranscriptionService:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._ffmpeg = ffmpeg_executable(settings.ffmpeg_path)

    @classmethod
    def from_settings(cls, settings: Settings) -> "TranscriptionService":
        service = cls(settings, load_engine(settings))
        # Loads the VAD model now, with the engine, rather than in the first request.
        cut_at_silences(np.zeros(SAMPLE_RATE, dtype=np.float32), settings.piece_max_s)
        return service

    @classmethod
    def load_in_background(cls, settings: Settings) -> "Future[TranscriptionService]":
        """``from_settings`` in a thread of its own: an entry point imports its web framework
        meanwhile, on the other core (README: process start to first answer)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        try:
            return pool.submit(cls.from_settings, settings)
        finally:
            pool.shutdown(wait=False)  # the thread ends with the load

    def options(self, language: str | None) -> TranscribeOptions:
        """Check a caller's options before any audio is read, so bad ones fail fast."""
        code = to_language_code(language)
        if code not in (None, "en") and not self.engine.multilingual:
            raise UnsupportedLanguage(
                f"The model {self.engine.model!r} is English-only; language must be 'en' or omitted."
            )
        return TranscribeOptions(
            language=code, beam_size=self.settings.beam_size, vad_filter=self.settings.vad_filter
        )

    def decode(self, audio: BinaryIO | Path, max_seconds: float | None = None) -> np.ndarray:
        """An upload (a file, or a stream saved to a private temp file first) as 16 kHz mono samples.

        The one decode of every caller; ``max_seconds`` overrides the duration limit (the S3
        path allows longer audio).
        """
        if not isinstance(audio, Path):
            with temporary_audio_path(self.settings.tmp_dir) as path:
                save_stream(audio, path)
                return self.decode(path, max_seconds)
        started = time.perf_counter()
        samples = decode(
            audio,
            ffmpeg=self._ffmpeg,
            timeout_s=self.settings.ffmpeg_timeout_s,
            max_seconds=max_seconds or self.settings.max_audio_seconds,
        )
        elapsed = time.perf_counter() - started
        logger.info(
            "decoded %.2f s of audio in %.2f s",
            samples.size / SAMPLE_RATE,
            elapsed,
            extra={"decode_s": round(elapsed, 3)},
        )
        return samples

    def transcribe(
        self,
        audio: BinaryIO | Path,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        max_seconds: float | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """Decode and transcribe a file or stream; blocking, so async callers use a thread."""
        return self.transcribe_samples(self.decode(audio, max_seconds), options, progress, on_segment)

    def detect_language(self, samples: np.ndarray) -> list[LanguageGuess]:
        """The language of decoded samples, most likely first, found where ``transcribe`` finds it."""
        return self._detect(samples, self._cut(samples)[1])

    def _cut(
        self, samples: np.ndarray, detection: SpeechDetection | None = None
    ) -> tuple[list[Span], list[Span]]:
        """The runs of speech, and the pieces to decode, each with the silence around it (``widen``).

        A recording of at most ``piece_max_s`` (a voice note) is one piece, the whole recording,
        as the bare engine hears it (unless a speaker 20 dB apart makes a piece of their own). A
        longer one is decoded run by run: several short sentences or commands sharing one piece
        were where Whisper dropped whole ones or said them twice (README).
        """
        limit = self.settings.piece_max_s
        runs = speech_spans(samples, detection or SpeechDetection(), limit)
        pieces = group_runs(runs, limit, levels_db(samples, runs)) if self._is_note(samples) else runs
        return runs, widen(pieces, samples.size, round(limit * SAMPLE_RATE))

    def _is_note(self, samples: np.ndarray) -> bool:
        """A recording of at most ``piece_max_s``: a voice note, decoded whole (``_cut``)."""
        return samples.size <= self.settings.piece_max_s * SAMPLE_RATE

    def transcribe_samples(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """Transcribe decoded 16 kHz mono samples, piece by piece (module docstring).

        Raises ``ComputeBudgetExceeded`` once the engine has used its budget, and whatever
        ``on_segment`` raises, at the next segment or piece.
        """
        started = time.perf_counter()
        duration = samples.size / SAMPLE_RATE
        runs, pieces = self._cut(samples, options.detection)
        cut = time.perf_counter()
        budget = Budget(
            max(self.settings.engine_budget_floor_s, self.settings.engine_budget_per_audio_s * duration),
            duration,
        )
        language = options.language or self._detect(samples, pieces)[0].code
        # The caller's prompt conditions the first window of the recording only. A voice note (one
        # piece, ``_cut``) may get the engine's shortest window; a long recording's runs may not.
        first = options.model_copy(update={"language": language, "note": self._is_note(samples)})
        later = first.model_copy(update={"prompt": None})
        segments: list[DecodedSegment] = []
        retried = 0
        jobs = [
            functools.partial(
                self._piece_and_misses,
                samples,
                piece,
                [r for r in runs if piece.start <= r.start < piece.end],
                first if index == 0 else later,
                later,
                budget,
            )
            for index, piece in enumerate(pieces)
        ]
        # Pieces are independent: with more than one engine worker (CHATSERVER_MAX_CONCURRENT_JOBS)
        # that many decode at once and are put back in order as each ends. With one, they run
        # here: a thread of their own would hold a malloc arena of its own (+90 MB measured on
        # 600 s of speech).
        pool = None
        if self.engine.workers > 1:
            pool = ThreadPoolExecutor(max_workers=self.engine.workers, thread_name_prefix="piece")
            # The request's log fields go with each job.
            futures = [pool.submit(contextvars.copy_context().run, job) for job in jobs]
            results: Iterator[tuple[list[DecodedSegment], int]] = (f.result() for f in futures)
        else:
            results = (job() for job in jobs)
        try:
            for piece, (found, again) in zip(pieces, results, strict=True):
                retried += again
                for segment in found:
                    # In order, and never before the previous segment ends.
                    floor = segments[-1].end if segments else 0.0
                    end = max(segment.end, floor)
                    segment = segment.model_copy(
                        update={"start": min(max(segment.start, floor), end), "end": end}
                    )
                    segments.append(segment)
                    if on_segment is not None:
                        on_segment(segment)
                if progress is not None:
                    progress(min(piece.end_s / duration, 1.0))
        finally:
            # Whatever stopped the loop (the budget, a client gone) stops the other pieces too.
            budget.stopped.set()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if progress is not None:
            progress(1.0)
        done = time.perf_counter()
        speech = sum(p.duration_s for p in pieces)
        logger.info(
            "transcribed %.2f s of %s audio: %d pieces (%d runs decoded again), %.2f s of speech; "
            "cut %.2f s, engine %.2f s",
            duration,
            language,
            len(pieces),
            retried,
            speech,
            cut - started,
            done - cut,
            extra={
                "audio_duration_s": round(duration, 3),
                "language": language,
                "pieces": len(pieces),
                "pieces_retried": retried,
                "speech_s": round(speech, 3),
                "cut_s": round(cut - started, 3),
                "engine_s": round(done - cut, 3),
            },
        )
        return Transcript.of_segments(segments, language, duration)

    def _piece_and_misses(
        self,
        samples: np.ndarray,
        piece: Span,
        runs: list[Span],
        options: TranscribeOptions,
        later: TranscribeOptions,
        budget: Budget,
    ) -> tuple[list[DecodedSegment], int]:
        """A piece's segments in order, and how many of its speech runs were decoded again."""
        found = self._piece(samples, piece, runs, options, budget)
        retried = 0
        # Whisper sometimes ends a window early and drops the speech after it (measured:
        # "one two three" after JFK in one piece). Runs of speech that no segment covers are
        # decoded once more on their own (not the whole piece again: the same input gives the
        # same answer); a second miss is left as it is.
        for missed in _uncovered(runs, found, (options.detection or SpeechDetection()).pad_s):
            if missed == piece:
                break
            retried += 1
            found += self._piece(samples, missed, [missed], later, budget)
        return sorted(found, key=lambda s: s.start), retried

    def _piece(
        self,
        samples: np.ndarray,
        span: Span,
        runs: list[Span],
        options: TranscribeOptions,
        budget: Budget,
    ) -> list[DecodedSegment]:
        """One piece through the engine, its segments on the recording's timeline, inside the piece.

        A piece that is one run of speech is one segment (``one_segment``: the engine may skip
        Whisper's timestamp tokens, measured faster and as accurate on short notes, README), and
        that segment spans the run, its words inside it.
        """
        budget.check()
        found: list[DecodedSegment] = []
        one_run = len(runs) == 1

        def collect(segment: DecodedSegment) -> None:
            shifted = segment.shifted(span.start_s)
            end = min(shifted.end, span.end_s)
            found.append(
                shifted.model_copy(update={"start": max(min(shifted.start, end), span.start_s), "end": end})
            )
            budget.check()

        options = options.model_copy(update={"one_segment": one_run})
        self.engine.transcribe(samples[span.start : span.end], options, None, collect)
        if one_run and len(found) == 1:
            run = runs[0]
            start, end = max(run.start_s, span.start_s), min(run.end_s, span.end_s)
            found[0] = found[0].spanning(start, max(start, end))
        return found

    def _detect(self, samples: np.ndarray, pieces: list[Span]) -> list[LanguageGuess]:
        """Detected once, on the first 30 s of speech (of the recording where there is none).

        A recording of one piece (a voice note) is detected on exactly that piece, which the
        engine then decodes from the same encoding.
        """
        if not self.engine.multilingual:
            return [LanguageGuess(code="en", probability=1.0)]
        if len(pieces) == 1:
            audio = samples[pieces[0].start : pieces[0].end]
        else:
            start = pieces[0].start if pieces else 0
            audio = samples[start : start + 30 * SAMPLE_RATE]
        return self.engine.detect_language(audio)


def _uncovered(runs: list[Span], segments: list[DecodedSegment], pad: float) -> list[Span]:
    """Consecutive runs of speech that no segment overlaps, each group as one span."""
    # Runs are padded (``pad``, SpeechDetection.pad_s); a segment must reach into the speech itself.
    groups: list[Span] = []
    previous_missed = False
    for run in runs:
        covered = any(s.start < run.end_s - pad and s.end > run.start_s + pad for s in segments)
        if covered or run.duration_s <= 2 * pad:
            previous_missed = False
            continue
        if previous_missed:
            groups[-1] = Span(groups[-1].start, run.end)
        else:
            groups.append(run)
        previous_missed = True
    return groups
