"""The errors of the S3 path: an upload, a job, the store, a callback. Each is a ChatServerError
(core/errors.py) with its status and type, in the one table the README lists."""

from ..core.errors import ChatServerError, InvalidOption, quote_value


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


class InvalidMetadata(InvalidOption):
    """``x-amz-meta-*`` options of an upload that cannot be read: the job ends ``failed``."""

    error_type = "invalid_metadata"


class CallbackNotConfigured(ChatServerError):
    error_type = "callback_not_configured"

    def __init__(self, field: str = "callback_url") -> None:
        super().__init__(
            f"{field} needs a signing secret on the server (CHATSERVER_CALLBACK_SECRET), and none is "
            "configured; leave it out and poll the job's status_url instead."
        )


class InvalidCallbackUrl(ChatServerError):
    error_type = "invalid_callback_url"

    def __init__(self, url: str, why: str, field: str = "callback_url") -> None:
        super().__init__(
            f"{field} {quote_value(url, 80)} {why}. Accepted: an https URL whose host resolves only to "
            "public addresses (not loopback, private, link-local, multicast, reserved or cloud "
            "metadata), without user:password@."
        )
