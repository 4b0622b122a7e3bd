"""The HTTP server: uvicorn with read deadlines, started by ``python -m chatserver``.

uvicorn closes idle keep-alive connections but has no deadline for a request to arrive: a
connection that sends nothing, headers that never end or a body that trickles would hold a
socket (and a spooled upload) for as long as the client likes. Its CLI cannot take another
protocol class, hence this entry point.
"""

import argparse
import asyncio
import ctypes
import json
import logging
import os
import uuid
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .api.error_handlers import error_body
from .api.middleware import ENDED_BY_SERVER
from .core.settings import Settings, get_settings

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("chatserver.access")


def _raw_response(status: int, reason: str, body: dict[str, Any], request_id: str) -> bytes:
    """A whole response on a connection about to close; written past h11, which does not
    allow a response before a request has arrived."""
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + payload


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the headers and another for the body.

    Headers late: 408 if some of the request came, else the idle connection is just closed.
    Body late: 408 unless the app has answered already (then only the close), and the app's
    next ``receive`` is a disconnect, so its request ends and frees what it held.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase = ""
        self._timer: asyncio.TimerHandle | None = None
        self._partial_request = False
        self._track()

    def data_received(self, data: bytes) -> None:
        if self._phase == "headers":
            self._partial_request = True
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # What h11 cannot parse as HTTP (or headers over its 16 KB limit): the documented
        # JSON body, not uvicorn's plain text.
        rid = uuid.uuid4().hex
        access_logger.info("invalid HTTP request -> 400", extra={"status": 400})
        body = {"error": {"type": "invalid_http", "message": f"{msg} Send HTTP/1.1.", "request_id": rid}}
        self.transport.write(_raw_response(400, "Bad Request", body, rid))
        self.transport.close()

    # The phase of the request on this connection: "headers" (waiting for them), "body"
    # (headers in, body not yet complete) or "done"; each change restarts the timer.
    def _track(self) -> None:
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else "done"
        if phase == self._phase:
            return
        self._phase = phase
        self._partial_request = False
        self._cancel_timer()
        if phase == "headers":
            self._timer = self.loop.call_later(self.header_timeout_s, self._headers_late)
        elif phase == "body":
            self._timer = self.loop.call_later(self.body_timeout_s, self._body_late)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        if self.transport.is_closing():
            return
        if self._partial_request:
            rid = uuid.uuid4().hex
            message = f"The request's headers did not arrive within {self.header_timeout_s:g} s."
            access_logger.info("headers late -> 408 [%s]", rid, extra={"status": 408})
            body = {"error": {"type": "request_timeout", "message": message, "request_id": rid}}
            self.transport.write(_raw_response(408, "Request Timeout", body, rid))
        self.transport.close()

    def _body_late(self) -> None:
        if self.transport.is_closing():
            return
        cycle, scope = self.cycle, self.scope
        if cycle is not None and not cycle.response_started:
            state = scope.setdefault("state", {})
            state[ENDED_BY_SERVER] = 408
            rid = state.get("request_id") or uuid.uuid4().hex
            message = (
                f"The request body did not arrive within {self.body_timeout_s:g} s; send it faster, "
                "or a smaller recording."
            )
            body = error_body(scope, 408, "request_timeout", message)
            self.transport.write(_raw_response(408, "Request Timeout", body, rid))
        if cycle is not None:
            # The app's next receive() is a disconnect, and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def protocol_with_deadlines(settings: Settings) -> type[DeadlineProtocol]:
    return type(
        "ChatServerProtocol",
        (DeadlineProtocol,),
        {"header_timeout_s": settings.header_timeout_s, "body_timeout_s": settings.body_timeout_s},
    )


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """What MALLOC_ARENA_MAX=2 does in the image, for a server started by hand.

    glibc gives each thread that transcribes an arena of its own and keeps what it freed there:
    with two transcriptions at once RSS stayed 18% higher after the load test (bench/). Only
    arenas made after this call are limited, so it runs before the model loads.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        logger.info("not glibc: malloc arenas left as they are")
        return
    libc.mallopt(-8, arenas)  # M_ARENA_MAX


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chatserver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = get_settings()
    _limit_malloc_arenas()
    from .main import app  # loads the model and configures logging: after the arguments parse

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=protocol_with_deadlines(settings),
        # RequestContext writes the access log, with request ids and 499/408 where they apply.
        access_log=False,
        log_config=None,  # our handlers (logs.py) on the root logger, uvicorn's lines included
    )
    logger.info(
        "serving on http://%s:%d (header deadline %g s, body deadline %g s, %d uploads at once)",
        args.host,
        args.port,
        settings.header_timeout_s,
        settings.body_timeout_s,
        settings.max_receiving_uploads,
    )
    uvicorn.Server(config).run()
