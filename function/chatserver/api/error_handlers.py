"""Every error leaves as ``{"error": {"type", "message", "request_id"}}`` with the right status.

``error_response`` is the one place a body is shaped: the exception handlers, the middleware
(413 from Content-Length, 503 for too many uploads) and the server's read deadlines (408) all
call it, and on /v1 paths it answers OpenAI's body instead.
"""

import errno
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from ..core.errors import ACCEPTED_FORMATS, ChatServerError, InsufficientStorage
from .openai_schemas import is_openai_path, openai_error
from .running import ClientGone

logger = logging.getLogger(__name__)

# Errors raised by the router, the body parser and the middleware, with the type each gets.
_HTTP_TYPES = {
    400: "malformed_body",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "file_too_large",
}
# Not a status a client ever reads (it has gone): what the access log shows for a request
# whose client disconnected before its answer, as nginx logs it.
CLIENT_CLOSED_REQUEST = 499


def request_id_of(scope: Scope) -> str | None:
    return scope.get("state", {}).get("request_id")


def error_body(scope: Scope, status: int, error_type: str, message: str, param: str | None = None) -> dict:
    """The error body for a request: ChatServer's, or OpenAI's on /v1 paths."""
    if is_openai_path(scope):
        # OpenAI's body on /v1, which its SDK turns into BadRequestError, RateLimitError...;
        # the request id stays in the X-Request-ID header.
        return openai_error(status, error_type, message, param).model_dump()
    return {"error": {"type": error_type, "message": message, "request_id": request_id_of(scope)}}


def error_response(
    scope: Scope,
    status: int,
    error_type: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    if status == 422 and error_type == "invalid_request" and is_openai_path(scope):
        # A missing or invalid field: OpenAI answers 400, which its SDK raises as BadRequestError
        # (a 422 would be UnprocessableEntityError). /transcribe keeps its documented 422.
        status = 400
    body = error_body(scope, status, error_type, message, param)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_of(error: dict) -> str | None:
    """The request field a validation error is about: the first name in its location
    (``("body", "timestamp_granularities[]", 0)`` is the field, not item 0)."""
    names = [part for part in error.get("loc", ()) if isinstance(part, str)]
    return names[1] if len(names) > 1 and names[0] in ("body", "query", "path") else None


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    if where == "file" and error.get("type") in ("missing", "value_error"):
        # value_error: a 'file' part without a filename, which the parser reads as text.
        return (
            "the multipart/form-data field 'file' is required, as a file part (with a filename): "
            f"send the recording as -F file=@audio.webm ({ACCEPTED_FORMATS})"
        )
    return f"{where or 'request'}: {error.get('msg', 'invalid')}"


def _http_message(exc: HTTPException) -> str:
    if exc.status_code == 400:
        # The multipart parser's own words ("Missing boundary in multipart.") or FastAPI's
        # "There was an error parsing the body": say what is expected too.
        return (
            f"The request body could not be parsed ({exc.detail}). Send multipart/form-data "
            "with the recording in the 'file' field."
        )
    return str(exc.detail)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChatServerError)
    async def service_error(request: Request, exc: ChatServerError) -> JSONResponse:
        retry = request.app.state.settings.retry_after_s
        headers = {"Retry-After": str(retry)} if exc.status_code in (503, 507) else None
        logger.info("request refused: %s (%s)", exc.error_type, exc.message)
        message = f"{exc.message} {exc.http_hint}".rstrip()
        return error_response(request.scope, exc.status_code, exc.error_type, message, headers, exc.param)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(_describe(e) for e in exc.errors())
        param = next(filter(None, map(_field_of, exc.errors())), None)
        return error_response(
            request.scope, 422, "invalid_request", f"Invalid request: {message}.", param=param
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        cause = exc.__cause__
        if isinstance(cause, ClientDisconnect):
            # FastAPI reports a client that left mid-upload as a 400; nobody reads the answer.
            return await client_gone(request, ClientGone())
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            # Starlette spools uploads over 1 MB to the temp dir while parsing the form, and
            # FastAPI reports any failure there as a 400: a full disk is not the client's fault.
            return await service_error(request, InsufficientStorage())
        error_type = _HTTP_TYPES.get(exc.status_code, "http_error")
        return error_response(request.scope, exc.status_code, error_type, _http_message(exc), exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        logger.info("client disconnected before its answer; its work was stopped")
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the log under the request id, never to the client.
        rid = getattr(request.state, "request_id", None)
        logger.error("unexpected error in request %s", rid or "-", exc_info=exc)
        return error_response(
            request.scope,
            500,
            "internal_error",
            "The server failed while handling this request; quote the request_id when reporting it.",
            # Starlette answers unhandled errors outside every middleware, so RequestContext
            # never sees this response to add the header: add it here.
            {"X-Request-ID": rid} if rid else None,
        )
