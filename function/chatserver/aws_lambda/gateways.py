"""API Gateway and Function URL events to the ASGI app, through Mangum, with the stage as root_path."""

from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from mangum import Mangum
from mangum.handlers import APIGateway, HTTPGateway
from mangum.types import Scope


def _with_prefix(scope: Scope, full_path: str) -> Scope:
    """Give the app the path the client used, with the API's prefix (a stage) as root_path.

    That is the ASGI convention Starlette follows: it routes on ``path`` less ``root_path``
    (so ``/transcribe`` matches under any stage) and builds URLs, such as the ``status_url``
    of POST /jobs, from the full path, so they carry the stage the client called.
    """
    route = scope["path"]
    prefix = full_path[: -len(route)] if route and full_path.endswith(route) else ""
    if prefix.startswith("/") and not prefix.endswith("/"):
        scope["path"] = full_path
        scope["root_path"] = prefix
    return scope


class _StageAwareHTTPGateway(HTTPGateway):
    """HTTP API and Function URL events (payload 2.0).

    A named HTTP API stage is part of the path (``/prod/transcribe``); ``$default`` and
    Function URLs have none.
    """

    @classmethod
    def infer(cls, event: Any, context: Any, config: Any) -> bool:
        return event.get("version") == "2.0" and "requestContext" in event

    @property
    def scope(self) -> Scope:
        scope = super().scope
        stage = self.event["requestContext"].get("stage") or "$default"
        path = scope["path"]
        prefix = f"/{stage}"
        if stage != "$default" and (path == prefix or path.startswith(f"{prefix}/")):
            # Starlette routes on path less root_path: /prod/transcribe -> /transcribe.
            scope["root_path"] = prefix
            scope["path"] = path if path != prefix else f"{prefix}/"
            return scope
        # A custom domain's base path mapping, stripped by Mangum (settings.api_base_path).
        raw_path = unquote(self.event.get("rawPath") or "")
        return _with_prefix(scope, raw_path) if raw_path != path else scope


class _StageAwareRestGateway(APIGateway):
    """REST API events (payload 1.0): ``path`` lacks the stage that ``requestContext.path`` has."""

    @property
    def scope(self) -> Scope:
        scope = super().scope
        client_path = unquote(self.event["requestContext"].get("path") or "")
        return _with_prefix(scope, client_path) if client_path != scope["path"] else scope


# Tried before Mangum's own handlers; ALB and Lambda@Edge events still reach those.
CUSTOM_HANDLERS: list[type] = [_StageAwareHTTPGateway, _StageAwareRestGateway]


def asgi_handler(app: FastAPI, api_base_path: str) -> Mangum:
    """Mangum with the ASGI lifespan off: it would run it on every invocation, and the model
    is loaded once per process, before the app is built."""
    return Mangum(app, lifespan="off", api_gateway_base_path=api_base_path, custom_handlers=CUSTOM_HANDLERS)
