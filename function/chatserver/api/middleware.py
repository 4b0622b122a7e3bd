"""ASGI middleware: request ids and access logs, HEAD, the upload size limit and the cap on
uploads being received at once."""

import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import Busy, PayloadTooLarge
from ..core.logs import request_id
from .error_handlers import CLIENT_CLOSED_REQUEST, error_response

logger = logging.getLogger("chatserver.access")

# Set in a request's scope state by the server (server.py) when it ends the request itself,
# for a read deadline: the status it answered, which the access log shows.
ENDED_BY_SERVER = "ended_by_server"
_LOGGED_PATH_CHARS = 200


class RequestContext:
    """Gives each request an id (Lambda's own where there is one), returns it, logs the outcome.

    A request whose client disconnected before its answer was complete is logged as 499,
    whatever the app tried to send, and one the server ended on a read deadline as 408.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lambda_context = scope.get("aws.context")
        rid = getattr(lambda_context, "aws_request_id", None) or uuid.uuid4().hex
        token = request_id.set(rid)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        started = time.perf_counter()
        status = 500
        complete = False
        client_left = False

        async def receive_watched() -> Message:
            nonlocal client_left
            message = await receive()
            if message["type"] == "http.disconnect" and not complete:
                client_left = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", rid)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive_watched, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if ENDED_BY_SERVER in state:
                status = state[ENDED_BY_SERVER]
            elif client_left:
                status = CLIENT_CLOSED_REQUEST
            path = scope["path"]
            if len(path) > _LOGGED_PATH_CHARS:  # a path is user input: never logged unbounded
                path = f"{path[:_LOGGED_PATH_CHARS]}... ({len(path)} characters)"
            logger.info(
                "%s %s -> %d in %.3f s",
                scope["method"],
                path,
                status,
                elapsed,
                # Fields of their own in JSON logs, so CloudWatch queries need no parsing.
                extra={
                    "method": scope["method"],
                    "route": path,
                    "status": status,
                    "time_s": round(elapsed, 3),
                },
            )
            request_id.reset(token)


class HeadAsGet:
    """HEAD works wherever GET does: the GET route answers, without its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server still knows the request as HEAD and sends no body either.
        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


class UploadLimit:
    """At most ``max_uploads`` request bodies are received at once; beyond that, a 503 at once.

    A slow or stalled upload holds a connection, a spool file and memory until the server's
    body deadline ends it (server.py); this bounds how many there can be.
    """

    def __init__(self, app: ASGIApp, max_uploads: int, retry_after_s: int) -> None:
        self.app = app
        self.max_uploads = max_uploads
        self.retry_after_s = retry_after_s
        self.receiving = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        if self.receiving >= self.max_uploads:
            logger.warning("upload refused: %d uploads are being received already", self.receiving)
            message = (
                f"{self.max_uploads} uploads are being received already; retry after the number "
                "of seconds in the Retry-After header."
            )
            headers = {"Retry-After": str(self.retry_after_s), "Connection": "close"}
            # The body is not read: closing the connection is the only way to be rid of it.
            await error_response(scope, 503, Busy.error_type, message, headers)(scope, receive, send)
            return
        self.receiving += 1
        counted = True

        def received() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.receiving -= 1

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                received()
            return message

        try:
            await self.app(scope, receive_counted, send)
        finally:
            received()


class BodySizeLimit:
    """Refuses bodies over ``max_bytes``: by Content-Length at once, else while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = PayloadTooLarge(self.max_bytes)
            # The body is never read, so the connection cannot be reused.
            response = error_response(
                scope, error.status_code, error.error_type, error.message, {"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises an HTTPException from body parsing unchanged, and our
                    # handler renders it like every other error.
                    raise HTTPException(413, PayloadTooLarge(self.max_bytes).message)
            return message

        await self.app(scope, counting_receive, send)
