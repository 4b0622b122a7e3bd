"""The errors of live dictation (the Realtime WebSocket). Each is a ChatServerError
(core/errors.py) with its status and type, in the one table the README lists; a session sends
them as OpenAI's ``error`` event (type invalid_request_error for a 4xx status, server_error for
a 5xx), with the error type as its ``code``, and goes on unless the message says not."""

from ...core.errors import ChatServerError, quote_value


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
