"""OpenAPI declarations shared by the routers: the error body, per-status errors, media types.

Each route declares every status and media type it can really answer with, so that the
schema is a contract a client (and the schemathesis test) can check responses against.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    type: str = Field(description="Stable machine-readable error type (see the README's errors table).")
    message: str = Field(description="What was wrong and what is accepted.")
    request_id: str | None = Field(description="Also in the X-Request-ID header and the server's logs.")


class ErrorBody(BaseModel):
    """The body of every error answered outside /v1."""

    error: ErrorDetail


_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
}

# Every status an error can have here, with a default description; a route passes its own
# description where it says more.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid option or malformed body.",
    401: "Missing or wrong API key.",
    404: "Not found.",
    405: "Method not allowed on this path.",
    408: "The request's headers or body did not arrive in time.",
    413: "The upload is over the size limit, or the audio over the duration limit.",
    415: "Not decodable as audio.",
    422: "A missing or invalid field.",
    500: "A bug: quote the request_id.",
    501: "Not configured on this server.",
    503: "Busy or a transient failure; see Retry-After.",
    507: "No temporary disk space left; see Retry-After.",
}

# What any route can answer whatever it does: the router's and the middleware's own errors
# (a body over the size limit is refused from Content-Length on every path).
COMMON_ERRORS = (413, 500)
# What a route that takes a request body can answer on top: a body that arrives too slowly,
# too many uploads being received at once, a malformed body or a missing field.
BODY_ERRORS = (400, 408, 422, 503)


def error_responses(
    *statuses: int,
    descriptions: Mapping[int, str] | None = None,
    model: type[BaseModel] = ErrorBody,
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with ``model`` as its JSON body.

    ``model`` is :class:`ErrorBody` by default; the /v1 routes pass OpenAI's error body.
    Listing 422 here replaces FastAPI's ``HTTPValidationError``, which is never answered.
    """
    descriptions = descriptions or {}
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        response: dict[str, Any] = {
            "model": model,
            "description": descriptions.get(status, ERROR_DESCRIPTIONS[status]),
        }
        if status in (503, 507):
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses


TEXT_FORMATS: dict[str, str] = {
    "text/plain": "response_format text or srt",
    "text/vtt": "response_format vtt",
}


def text_content(media_types: Iterable[str] = TEXT_FORMATS) -> dict[str, Any]:
    """The plain-text media types a transcription route answers besides JSON, for a 200's
    ``content``; FastAPI adds ``application/json`` from the route's ``response_model``."""
    return {media_type: {"schema": {"type": "string"}} for media_type in media_types}


def transcription_responses(
    description: str = "The transcript, in the requested response_format.",
    media_types: Iterable[str] = TEXT_FORMATS,
) -> dict[int | str, dict[str, Any]]:
    """The 200 of a transcription route: JSON (its response_model) and the text formats."""
    return {200: {"description": description, "content": text_content(media_types)}}
