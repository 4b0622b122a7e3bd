"""Errors a request or job can end in, each with its HTTP status and whether a retry may help.

The HTTP layer turns them into JSON bodies; the S3 runner writes permanent ones into a
``failed`` result and re-raises transient ones so that Lambda retries the event.
"""

from typing import ClassVar

ACCEPTED_FORMATS = "webm/opus, ogg/opus, ogg/vorbis, m4a/mp4/aac, mp3, wav, flac"


class ChatServerError(Exception):
    status_code: ClassVar[int] = 400
    error_type: ClassVar[str] = "invalid_request"
    # Transient errors may succeed when tried again: HTTP says Retry-After, S3 jobs re-raise.
    transient: ClassVar[bool] = False
    # Advice that only makes sense to an HTTP caller; an S3 job's failed result leaves it out.
    http_hint: ClassVar[str] = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyAudio(ChatServerError):
    error_type = "empty_file"

    def __init__(self) -> None:
        super().__init__(f"The uploaded file is empty. Send a recording in one of: {ACCEPTED_FORMATS}.")


class UnknownLanguage(ChatServerError):
    error_type = "unknown_language"

    def __init__(self, value: str) -> None:
        super().__init__(
            f"Unknown language {value!r}. Use a Whisper language name or ISO 639-1 code "
            "(for example 'french', 'French' or 'fr'), or leave it out to detect the language."
        )


class UnsupportedLanguage(ChatServerError):
    error_type = "unsupported_language"


class InvalidOption(ChatServerError):
    error_type = "invalid_option"


class PayloadTooLarge(ChatServerError):
    status_code = 413
    error_type = "file_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            f"The upload is larger than the {limit_bytes} byte limit "
            f"({limit_bytes / 1024 / 1024:.1f} MiB). Send a shorter or more compressed "
            "recording, or use the S3 upload path (POST /jobs) for large files."
        )


class AudioTooLong(ChatServerError):
    status_code = 413
    error_type = "audio_too_long"
    http_hint = "Split it, or use the S3 upload path (POST /jobs) for long recordings."

    def __init__(self, limit_s: float) -> None:
        super().__init__(f"The audio is longer than the {limit_s:g} s limit.")


class UndecodableAudio(ChatServerError):
    status_code = 415
    error_type = "unsupported_media"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"The file could not be decoded as audio ({detail}). Accepted formats: {ACCEPTED_FORMATS}."
        )


class DecodeTimeout(ChatServerError):
    status_code = 422
    error_type = "decode_timeout"

    def __init__(self, limit_s: float) -> None:
        super().__init__(
            f"Decoding the audio took longer than the {limit_s:g} s limit and was stopped. "
            f"Send a standard recording in one of: {ACCEPTED_FORMATS}."
        )


class DecoderCrashed(ChatServerError):
    status_code = 503
    error_type = "decoder_failed"
    transient = True

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"The audio decoder was killed by signal {signal_number}; try again.")


class Busy(ChatServerError):
    status_code = 503
    error_type = "server_busy"
    transient = True

    def __init__(self, capacity: int) -> None:
        super().__init__(
            f"All {capacity} transcription slots and the waiting line are full; retry after "
            "the number of seconds in the Retry-After header."
        )


class InsufficientStorage(ChatServerError):
    status_code = 507
    error_type = "insufficient_storage"
    transient = True

    def __init__(self) -> None:
        super().__init__("The server has no temporary disk space left for this audio; try again later.")


class ObjectTooLarge(ChatServerError):
    """An S3 upload over the job size limit (``aws s3 cp`` is not bound by the POST policy)."""

    status_code = 413
    error_type = "file_too_large"

    def __init__(self, size: int, limit_bytes: int) -> None:
        super().__init__(
            f"The object is {size} bytes, over the {limit_bytes} byte limit for transcription "
            f"jobs ({limit_bytes / 1024 / 1024:.1f} MiB). Upload a shorter or more compressed recording."
        )


class JobNotFound(ChatServerError):
    status_code = 404
    error_type = "job_not_found"

    def __init__(self, job_id: str, malformed: bool) -> None:
        why = "is not a job id (ids are the job_id that POST /jobs returns)" if malformed else "is unknown"
        super().__init__(f"Job {job_id[:80]!r} {why}; create a job with POST /jobs.")


class S3NotConfigured(ChatServerError):
    status_code = 501
    error_type = "s3_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "The S3 upload path is not configured on this server (set CHATSERVER_BUCKET); "
            "send recordings to POST /transcribe instead."
        )


class StorageUnavailable(ChatServerError):
    status_code = 503
    error_type = "storage_unavailable"
    transient = True

    def __init__(self) -> None:
        super().__init__("The job store (S3) did not answer or refused the request; try again.")
