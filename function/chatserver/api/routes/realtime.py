"""GET /v1/realtime?intent=transcription: live dictation over OpenAI's Realtime WebSocket.

The key was checked before the handshake (auth.py: ``Authorization: Bearer`` or the
``openai-insecure-api-key.<key>`` subprotocol). Here: the browser's origin, the subprotocol the
server selects (``realtime``, never the key), the count of open sessions and the session's
length; then the session itself (api/realtime/session.py). Refusals before the handshake are
HTTP answers with the error body; after it, OpenAI's ``error`` event and a close code:
1008 for a limit (length, idle time, intent), 1013 (try again later) when sessions are full.
Served by uvicorn; API Gateway's REST API (Lambda) cannot hold a WebSocket, and /config says
so to the page.
"""

import contextlib
import importlib.util
import logging
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, WebSocket
from starlette.datastructures import Headers

from ...core.errors import ChatServerError, InvalidOption
from ...core.logs import request_id
from ...core.settings import Settings
from ..error_handlers import error_response
from ..realtime import server_events as out
from ..realtime.errors import IdleTimeout, OriginRefused, SessionExpired, TooManySessions
from ..realtime.limits import SessionCount
from ..realtime.session import Session

logger = logging.getLogger(__name__)

router = APIRouter()

SUBPROTOCOL = "realtime"
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


def websockets_served() -> bool:
    """Whether uvicorn here can serve a WebSocket at all (it needs one of these libraries)."""
    return any(importlib.util.find_spec(name) is not None for name in ("websockets", "wsproto"))


def origin_allowed(headers: Headers, settings: Settings) -> bool:
    """Browsers send no CORS preflight for a WebSocket: a page of another site could open one
    with a visitor's browser. Allowed: no Origin (not a browser), this server's own page, or an
    origin in CHATSERVER_CORS_ORIGINS."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return origin in settings.cors_origins or urlsplit(origin).netloc == headers.get("host", "")


async def _deny(websocket: WebSocket, status: int, error_type: str, message: str) -> None:
    logger.info("live session refused before the handshake: %s", error_type)
    response = error_response(websocket.scope, status, error_type, message)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # the server has no websocket.http.response extension
        await websocket.close(code=CLOSE_POLICY)


async def _end(websocket: WebSocket, session: Session | None, error: ChatServerError, code: int) -> None:
    """OpenAI's error event (its ``code`` is the error type), then the close with a short reason."""
    detail = out.error_detail(error)
    try:
        await websocket.send_text(out.ErrorEvent(error=detail).model_dump_json())
        await websocket.close(code=code, reason=error.error_type)
    except (RuntimeError, OSError):
        pass  # the client left first
    where = f"session {session.id}" if session else "live session"
    logger.info("%s closed: %s", where, error.error_type)


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, intent: str | None = None) -> None:
    app_state = websocket.app.state
    settings: Settings = app_state.settings
    if not settings.realtime_enabled:
        message = "Live dictation is off on this server (CHATSERVER_REALTIME_ENABLED=false)."
        await _deny(websocket, 404, "not_found", message)
        return
    if not origin_allowed(websocket.headers, settings):
        refused = OriginRefused(websocket.headers.get("origin", ""))
        await _deny(websocket, refused.status_code, refused.error_type, refused.message)
        return
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    if intent not in (None, "transcription"):
        message = (
            f"intent={intent[:40]!r} is not offered: this server runs transcription sessions "
            "(intent=transcription)."
        )
        await _end(websocket, None, InvalidOption(message), CLOSE_POLICY)
        return
    count: SessionCount = app_state.live_sessions
    try:
        with count.hold():
            session = Session(websocket, app_state.service, app_state.slots, settings)
            token = request_id.set(session.id)  # the session's log lines carry its id
            try:
                await _serve(websocket, session, settings, count)
            finally:
                request_id.reset(token)
    except TooManySessions as full:
        await _end(websocket, None, full, CLOSE_TRY_AGAIN_LATER)


async def _serve(websocket: WebSocket, session: Session, settings: Settings, count: SessionCount) -> None:
    logger.info("session %s opened (%d of %d open)", session.id, count.open, count.limit)
    ending = "expired"
    try:
        with anyio.move_on_after(settings.realtime_max_session_s):
            ending = await session.run()
    except Exception:  # a bug: the client hears of it, the trace goes to the log only
        logger.exception("session %s failed", session.id)
        detail = out.ErrorDetail(
            type="server_error",
            code="internal_error",
            message=f"The server failed during this session; quote session {session.id} when reporting it.",
        )
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.send_text(out.ErrorEvent(error=detail).model_dump_json())
            await websocket.close(code=CLOSE_INTERNAL_ERROR, reason="internal_error")
        return
    logger.info("session %s ended (%s): %s", session.id, ending, session.summary())
    if ending == "expired":
        await _end(websocket, session, SessionExpired(settings.realtime_max_session_s), CLOSE_POLICY)
    elif ending == "idle":
        await _end(websocket, session, IdleTimeout(settings.realtime_idle_timeout_s), CLOSE_POLICY)
