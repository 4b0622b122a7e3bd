"""Errors a request or job can end in, each with its HTTP status and whether a retry may help.

The HTTP layer turns them into JSON bodies; the S3 runner writes permanent ones into a
``failed`` result and re-raises transient ones so that Lambda retries the event.
"""

from typing import ClassVar

ACCEPTED_FORMATS = "webm/opus, ogg/opus, ogg/vorbis, m4a/mp4/aac, mp3, wav, flac"


def quote_value(value: str, limit: int = 40) -> str:
    """A user-supplied value as it may appear in a message or a log line: quoted, and cut to
    ``limit`` characters with its length, so a megabyte of input is never echoed (issue 10)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


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
            f"Unknown language {quote_value(value)}. Use a Whisper language name, an ISO 639-1 "
            "code or a BCP-47 tag (for example 'french', 'French', 'fr' or 'fr-FR'), or leave it "
            "out to detect the language."
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
        super().__init__(f"Job {quote_value(job_id, 80)} {why}; create a job with POST /jobs.")


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


# --- API keys and the OpenAI-compatible routes (issue 11) ---------------------------------


class InvalidApiKey(ChatServerError):
    status_code = 401
    error_type = "invalid_api_key"

    def __init__(self, missing: bool) -> None:
        what = "No API key was sent" if missing else "The API key is not valid"
        super().__init__(f"{what}: send 'Authorization: Bearer <key>' with one of this server's keys.")


class UnknownModel(ChatServerError):
    """A ``model`` field naming neither the loaded model nor its ``whisper-1`` alias."""

    error_type = "model_not_found"

    def __init__(self, value: str, accepted: list[str]) -> None:
        super().__init__(
            f"Unknown model {quote_value(value)}: this server runs {' or '.join(map(repr, accepted))}."
        )


class ModelNotFound(UnknownModel):
    status_code = 404


# --- end of issue 11 errors ---------------------------------------------------------------


# --- Compute bounds (issue 10 item 1) --------------------------------------------------------


class ComputeBudgetExceeded(ChatServerError):
    """A transcription used its engine seconds (``engine_budget_*`` settings) and was stopped.

    503, not 422: the audio is valid and may well pass on a less loaded server; but not
    transient for the S3 runner, since the same audio on the same server would exceed the
    budget again, so a job ends ``failed`` rather than being retried by Lambda.
    """

    status_code = 503
    error_type = "compute_budget_exceeded"
    http_hint = "Retry later, or send a shorter recording."

    def __init__(self, budget_s: float, audio_s: float) -> None:
        super().__init__(
            f"Transcription stopped after {budget_s:.0f} s of engine time, the budget for "
            f"{audio_s:.0f} s of audio; the recording takes unusually long to decode (noise or "
            "music rather than speech?)."
        )


# --- end of compute bounds ---------------------------------------------------------------


# --- Edges of the HTTP contract (issue 10) --------------------------------------------------


class RepeatedField(ChatServerError):
    """A form field sent more than once: the parser would silently keep the last one."""

    status_code = 422
    error_type = "invalid_request"

    def __init__(self, field: str, count: int) -> None:
        super().__init__(
            f"The multipart/form-data field {quote_value(field)} was sent {count} times; send it once "
            "(one recording per request)."
        )


# --- end of issue 10 errors -----------------------------------------------------------------


class CorsRefused(ChatServerError):
    """A CORS preflight that the configured origins, methods or headers do not allow."""

    error_type = "cors_refused"

    def __init__(self, refused: str, methods: list[str]) -> None:
        super().__init__(
            f"CORS preflight refused ({refused}): the allowed origins are CHATSERVER_CORS_ORIGINS, "
            f"the methods {', '.join(methods)}, the headers Authorization and Content-Type."
        )


# --- Live dictation: the Realtime WebSocket (issue 21) ----------------------------------------
# Sent as OpenAI's `error` event (type invalid_request_error for a 4xx status, server_error for
# a 5xx), with the error_type as its `code`; the session goes on unless the message says not.


class OriginRefused(ChatServerError):
    """A browser page on another origin opening the WebSocket (browsers send no CORS preflight
    for one): refused before the handshake completes, as a 403."""

    status_code = 403
    error_type = "origin_refused"

    def __init__(self, origin: str) -> None:
        super().__init__(
            f"WebSocket from origin {quote_value(origin, 80)} refused: open it from this server's own "
            "page or from an origin in CHATSERVER_CORS_ORIGINS."
        )


class InvalidEvent(ChatServerError):
    """A client event that is not JSON, not an object, of an unknown type or with wrong fields."""

    error_type = "invalid_event"


class CommitEmpty(ChatServerError):
    """OpenAI's own code for a commit of under 100 ms of audio."""

    error_type = "input_audio_buffer_commit_empty"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
            f"audio, but buffer only has {seconds * 1000:.2f}ms of audio."
        )


class AppendTooLarge(ChatServerError):
    status_code = 413
    error_type = "append_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"input_audio_buffer.append carried {size} bytes of audio, over the {limit} byte limit "
            f"(CHATSERVER_REALTIME_MAX_APPEND_BYTES, {limit / 48000:.1f} s of PCM16 at 24 kHz); the "
            "audio was dropped: send it in smaller pieces."
        )


class TooManySessions(ChatServerError):
    status_code = 503
    error_type = "server_busy"

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"All {limit} live dictation sessions of this server are in use; connect again in "
            f"{retry_after_s} s."
        )


class SessionExpired(ChatServerError):
    status_code = 408
    error_type = "session_expired"

    def __init__(self, limit_s: float) -> None:
        super().__init__(
            f"The session reached its maximum duration of {limit_s:g} s "
            "(CHATSERVER_REALTIME_MAX_SESSION_S) and is closed; open a new one to go on."
        )


class IdleTimeout(ChatServerError):
    status_code = 408
    error_type = "idle_timeout"

    def __init__(self, limit_s: float) -> None:
        super().__init__(
            f"No event arrived for {limit_s:g} s (CHATSERVER_REALTIME_IDLE_TIMEOUT_S): the session is closed."
        )


# --- end of live dictation errors ---------------------------------------------------------------
