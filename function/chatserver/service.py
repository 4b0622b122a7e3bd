"""The one transcription service that the HTTP routes and the S3 job runner both call."""

import logging
import time
from pathlib import Path
from typing import BinaryIO

from .audio import decode, ffmpeg_executable, save_stream, temporary_audio_path
from .engines import Engine, TranscribeOptions, load_engine
from .engines.base import ProgressCallback, SegmentCallback
from .errors import UnsupportedLanguage
from .languages import to_language_code
from .settings import Settings
from .transcript import Transcript

logger = logging.getLogger(__name__)


class TranscriptionService:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._ffmpeg = ffmpeg_executable(settings.ffmpeg_path)

    @classmethod
    def from_settings(cls, settings: Settings) -> "TranscriptionService":
        return cls(settings, load_engine(settings))

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

    def transcribe(
        self,
        audio: BinaryIO | Path,
        options: TranscribeOptions,
        progress: ProgressCallback | None = None,
        max_seconds: float | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """Decode and transcribe a file or stream; blocking, so async callers use a thread.

        ``max_seconds`` overrides the duration limit (the S3 path allows longer audio).
        """
        limit = max_seconds or self.settings.max_audio_seconds
        if isinstance(audio, Path):
            return self._transcribe_file(audio, options, progress, limit, on_segment)
        with temporary_audio_path(self.settings.tmp_dir) as path:
            save_stream(audio, path)
            return self._transcribe_file(path, options, progress, limit, on_segment)

    def _transcribe_file(
        self,
        path: Path,
        options: TranscribeOptions,
        progress: ProgressCallback | None,
        max_seconds: float,
        on_segment: SegmentCallback | None,
    ) -> Transcript:
        started = time.perf_counter()
        samples = decode(
            path,
            ffmpeg=self._ffmpeg,
            timeout_s=self.settings.ffmpeg_timeout_s,
            max_seconds=max_seconds,
        )
        decoded = time.perf_counter()
        transcript = self.engine.transcribe(samples, options, progress, on_segment)
        done = time.perf_counter()
        logger.info(
            "transcribed %.2f s of %s audio: decode %.2f s, engine %.2f s",
            transcript.duration,
            transcript.language,
            decoded - started,
            done - decoded,
            extra={
                "audio_duration_s": transcript.duration,
                "language": transcript.language,
                "decode_s": round(decoded - started, 3),
                "engine_s": round(done - decoded, 3),
            },
        )
        return transcript
