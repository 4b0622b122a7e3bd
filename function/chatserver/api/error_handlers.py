"""Every error leaves as ``{"error": {"type", "message", "request_id"}}`` with the right status."""

import errno
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import ACCEPTED_FORMATS, ChatServerError, InsufficientStorage

logger = logging.getLogger(__name__)

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "file_too_large"}


def _error(
    request: Request,
    status: int,
    error_type: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    rid = getattr(request.state, "request_id", None)
    body = {"error": {"type": error_type, "message": message, "request_id": rid}}
    return JSONResponse(body, status_code=status, headers=headers)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    if error.get("type") == "missing" and where == "file":
        return (
            "the multipart/form-data field 'file' is required: send the recording as "
            f"-F file=@audio.webm ({ACCEPTED_FORMATS})"
        )
    return f"{where or 'request'}: {error.get('msg', 'invalid')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChatServerError)
    async def service_error(request: Request, exc: ChatServerError) -> JSONResponse:
        retry = request.app.state.settings.retry_after_s
        headers = {"Retry-After": str(retry)} if exc.status_code in (503, 507) else None
        logger.info("request refused: %s (%s)", exc.error_type, exc.message)
        message = f"{exc.message} {exc.http_hint}".rstrip()
        return _error(request, exc.status_code, exc.error_type, message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(_describe(e) for e in exc.errors())
        return _error(request, 422, "invalid_request", f"Invalid request: {message}.")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            # Starlette spools uploads over 1 MB to the temp dir while parsing the form, and
            # FastAPI reports any failure there as a 400: a full disk is not the client's fault.
            return await service_error(request, InsufficientStorage())
        error_type = _HTTP_TYPES.get(exc.status_code, "http_error")
        return _error(request, exc.status_code, error_type, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the log under the request id, never to the client.
        rid = getattr(request.state, "request_id", None)
        logger.error("unexpected error in request %s", rid or "-", exc_info=exc)
        return _error(
            request,
            500,
            "internal_error",
            "The server failed while handling this request; quote the request_id when reporting it.",
            # Starlette answers unhandled errors outside every middleware, so RequestContext
            # never sees this response to add the header: add it here.
            {"X-Request-ID": rid} if rid else None,
        )
