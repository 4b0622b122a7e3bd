"""API keys (``Authorization: Bearer``, or a WebSocket subprotocol) and CORS, both optional and
both off by default."""

import hmac
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..core.errors import ChatServerError, CorsRefused, InvalidApiKey
from ..core.settings import Settings
from .error_handlers import error_response
from .paths import app_path

logger = logging.getLogger(__name__)

# Open without a key: they hold no user data. /health is probed by load balancers, the page
# and its assets are what a browser loads before it can ask for a key, and the docs and the
# schema describe the API.
PUBLIC_PATHS = frozenset({"/health", "/", "/config", "/docs", "/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)


def is_public(scope: Scope) -> bool:
    path = app_path(scope)
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def key_is_valid(sent: str, keys: list[SecretStr]) -> bool:
    """Constant time in the key sent: every configured key is compared, none short-circuits."""
    candidate = sent.encode()
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(candidate, key.get_secret_value().encode())
    return valid


class _Cors(CORSMiddleware):
    """Starlette's CORS, except that a refused preflight gets the documented JSON error body
    (Starlette answers it in plain text), naming what was refused and what is allowed."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else Headers()
        preflight = (
            scope["type"] == "http"
            and scope["method"] == "OPTIONS"
            and "origin" in headers
            and "access-control-request-method" in headers
        )
        if not preflight:
            await super().__call__(scope, receive, send)
            return
        response = self.preflight_response(request_headers=headers)
        if response.status_code == 400:
            refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")  # "origin, method"
            error = CorsRefused(refused, self.allow_methods)
            kept = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
            response = error_response(scope, error.status_code, error.error_type, error.message, kept)
        await response(scope, receive, send)


# Browsers cannot set headers on a WebSocket: OpenAI's browser clients offer the key as a
# subprotocol instead, beside "realtime" (which is the one the server selects).
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def sent_key(scope: Scope) -> str:
    """The key a request carries: ``Authorization: Bearer``, or on a WebSocket the subprotocol."""
    scheme, _, sent = Headers(scope=scope).get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and sent.strip():
        return sent.strip()
    if scope["type"] == "websocket":
        for offered in scope.get("subprotocols", []):
            if offered.startswith(KEY_SUBPROTOCOL):
                return offered[len(KEY_SUBPROTOCOL) :]
    return ""


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, missing: bool) -> None:
    """A 401 with the error body instead of the handshake, before any message is read; a bare
    close (an HTTP 403) where the server cannot send a response of its own."""
    error = InvalidApiKey(missing=missing)
    message = f"{error.message[:-1]}, or the subprotocol '{KEY_SUBPROTOCOL}<key>' on a WebSocket."
    socket = WebSocket(scope, receive, send)
    response = error_response(
        scope, error.status_code, error.error_type, message, {"WWW-Authenticate": "Bearer"}
    )
    try:
        await socket.send_denial_response(response)
    except RuntimeError:  # no websocket.http.response extension
        await socket.close(code=1008)


class ApiKeys:
    """Refuses a request without a valid key before its body is read (no upload is parsed for
    a caller that may not use the service); the 401 is rendered by the app's own handler, so
    /v1 routes get OpenAI's error body and everything else the usual one."""

    def __init__(self, app: ASGIApp, keys: list[SecretStr]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_public(scope):
            await self.app(scope, receive, send)
            return
        sent = sent_key(scope)
        if sent and key_is_valid(sent, self.keys):
            await self.app(scope, receive, send)
            return
        # Only whether a key came: never the key, nor a prefix of it.
        # %.200s: the path is the client's, never logged unbounded (issue 10).
        why = "wrong" if sent else "no"
        method = scope.get("method", "WEBSOCKET")
        logger.info("refused %s %.200s: %s API key", method, app_path(scope), why)
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send, missing=not sent)
            return
        request = Request(scope, receive)
        handler = scope["app"].exception_handlers[ChatServerError]
        response = await handler(request, InvalidApiKey(missing=not sent))
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


def install_access_control(app: FastAPI, settings: Settings) -> None:
    """Keys inside CORS, so that a browser's preflight (which carries no Authorization header)
    is answered by CORS, and a 401 still carries the CORS headers the browser needs to read it."""
    if settings.api_keys:
        app.add_middleware(ApiKeys, keys=settings.api_keys)
        _declare_bearer_security(app)
    if settings.cors_origins:
        app.add_middleware(
            _Cors,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            # What a browser script may read: the request id to quote, when to retry a 503.
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )


def _declare_bearer_security(app: FastAPI) -> None:
    """The schema says which operations need the key, so /docs offers "Authorize" and a client
    generated from it sends the header."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "One of CHATSERVER_API_KEYS."}
            }
            for path, operations in schema["paths"].items():
                if not is_public({"path": path}):
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
