"""ASGI middleware: request ids and access logs, and the upload size limit."""

import json
import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PayloadTooLarge
from ..logs import request_id

logger = logging.getLogger("chatserver.access")


class RequestContext:
    """Gives each request an id (Lambda's own where there is one), returns it, logs the outcome."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lambda_context = scope.get("aws.context")
        rid = getattr(lambda_context, "aws_request_id", None) or uuid.uuid4().hex
        token = request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            logger.info(
                "%s %s -> %d in %.3f s",
                scope["method"],
                scope["path"],
                status,
                elapsed,
                # Fields of their own in JSON logs, so CloudWatch queries need no parsing.
                extra={
                    "method": scope["method"],
                    "route": scope["path"],
                    "status": status,
                    "time_s": round(elapsed, 3),
                },
            )
            request_id.reset(token)


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
            await _send_too_large(send, self.max_bytes)
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


async def _send_too_large(send: Send, max_bytes: int) -> None:
    error = PayloadTooLarge(max_bytes)
    body = json.dumps({"error": {"type": error.error_type, "message": error.message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
