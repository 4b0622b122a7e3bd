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
    # The request field at fault, where one is; OpenAI's error body on /v1 carries it as ``param``.
    param: str | None = None

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param


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


class UnsupportedOption(ChatServerError):
    """A field or value of OpenAI's audio API that ChatServer cannot honour (``include[]``,
    ``keywords[]``, ``diarized_json``...): refused by name, never ignored."""

    error_type = "unsupported_option"


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


class UnknownField(ChatServerError):
    """Form fields or query parameters that the route does not declare: refused rather than
    silently dropped, since a misspelt option would otherwise change nothing without a word."""

    error_type = "unknown_field"

    def __init__(
        self, route: str, kind: str, unknown: list[str], accepted: list[str], hint: str = ""
    ) -> None:
        shown = ", ".join(quote_value(name) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        plural = "s" if len(unknown) > 1 else ""
        takes = f"the {kind}s {', '.join(accepted)}" if accepted else f"no {kind}s"
        super().__init__(
            f"Unknown {kind}{plural} {shown}{more}: {route} takes {takes}.{' ' + hint if hint else ''}",
            param=unknown[0],
        )


class NotAForm(ChatServerError):
    """A body that is not a form, on a route whose fields are all optional: its fields would be
    dropped without a word (a route with a required field says that field is missing instead)."""

    error_type = "malformed_body"

    def __init__(self, content_type: str) -> None:
        sent = f"Content-Type {quote_value(content_type)}" if content_type else "no Content-Type"
        super().__init__(
            f"The body ({sent}) is not a form, so its fields would be ignored: this route takes its "
            "fields as multipart/form-data or application/x-www-form-urlencoded."
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
