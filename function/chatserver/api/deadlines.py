"""uvicorn's h11 protocol with read deadlines: for the request's headers, then for its body.

uvicorn closes idle keep-alive connections but has no deadline for a request to arrive: a
connection that sends nothing, headers that never end or a body that trickles would hold a
socket (and a spooled upload) for as long as the client likes.
"""

import asyncio
import json
import logging
import uuid
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..core.settings import Settings
from .error_handlers import error_body
from .middleware import ENDED_BY_SERVER

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

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # From here the connection is a WebSocket's (live dictation), whose own limits apply
        # (idle time, session length: api/realtime/): the body deadline would close it.
        self._cancel_timer()
        self._phase = "websocket"
        super().handle_websocket_upgrade(event)

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
        if self.transport.is_closing() or self._phase == "websocket":
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
