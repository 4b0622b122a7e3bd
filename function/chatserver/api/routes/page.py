"""The voice-note page (GET /), its assets, what it needs to know (GET /config), and /docs.

Everything is served by the app itself, so both pages work without any network but the
path to this server: the page is hand-written (function/chatserver/static/), and Swagger UI
comes from the pinned ``fastapi-offline`` package instead of FastAPI's default CDN. Every
URL the page and /docs use is relative, so they work at ``/`` on uvicorn and under an API
Gateway stage (``/Prod/``) alike.
"""

from pathlib import Path
from urllib.parse import urlsplit

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ...core.settings import Settings
from ...speech.languages import LANGUAGES
from ..dependencies import ServiceDep, SettingsDep
from ..openapi import COMMON_ERRORS, error_responses
from .realtime import websockets_served

STATIC = Path(__file__).resolve().parents[2] / "static"
_SWAGGER = Path(fastapi_offline.__file__).resolve().parent / "static"

# The only files GET /static/{name} serves: a fixed list, so no path from a request ever
# reaches the file system.
ASSETS: dict[str, tuple[Path, str]] = {
    "app.js": (STATIC / "app.js", "text/javascript; charset=utf-8"),
    "live.js": (STATIC / "live.js", "text/javascript; charset=utf-8"),
    "pcm-worklet.js": (STATIC / "pcm-worklet.js", "text/javascript; charset=utf-8"),
    "style.css": (STATIC / "style.css", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": (_SWAGGER / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": (_SWAGGER / "swagger-ui.css", "text/css; charset=utf-8"),
}

# Through API Gateway a synchronous request is one Lambda invocation, whose payload (the
# whole event, the body base64-encoded) is at most 6 MiB: 3/4 of that, less 64 KiB for the
# event around the body, is the largest upload that arrives at all.
LAMBDA_MAX_UPLOAD_BYTES = (6 * 1024 * 1024 - 64 * 1024) * 3 // 4

router = APIRouter()


class Language(BaseModel):
    code: str = Field(description="ISO 639-1 code, as the language form field accepts it.")
    name: str = Field(description="Whisper's English name of the language.")


class PageConfig(BaseModel):
    """What the page needs to know before it sends anything."""

    max_upload_bytes: int = Field(description="Largest recording POST /transcribe takes here.")
    max_audio_seconds: float = Field(description="Longest audio POST /transcribe takes.")
    jobs_enabled: bool = Field(description="Whether longer or larger recordings can go through POST /jobs.")
    max_job_upload_bytes: int | None = Field(description="Largest recording POST /jobs takes; null: no jobs.")
    max_job_audio_seconds: float | None = Field(description="Longest audio of a job; null: no jobs.")
    auth_required: bool = Field(description="Whether the API asks for 'Authorization: Bearer <key>'.")
    translate: bool = Field(description="Whether the model can translate into English (task=translate).")
    languages: list[Language] = Field(description="The languages the model knows; empty: English only.")
    live: bool = Field(
        description="Whether live dictation (the Realtime WebSocket at v1/realtime) is offered here: "
        "not through API Gateway (Lambda), which cannot hold a WebSocket."
    )
    live_max_session_s: float | None = Field(description="Longest live session; null: no live dictation.")
    engine: str
    model: str


def _behind_api_gateway(request: Request) -> bool:
    return "aws.event" in request.scope  # set by Mangum for every API Gateway event


@router.get(
    "/config",
    response_model=PageConfig,
    responses=error_responses(*COMMON_ERRORS),
    summary="The limits and options of this server, for the page",
)
async def page_config(request: Request, settings: SettingsDep, service: ServiceDep) -> PageConfig:
    max_upload = settings.max_upload_bytes
    if _behind_api_gateway(request):
        max_upload = min(max_upload, LAMBDA_MAX_UPLOAD_BYTES)
    jobs = settings.bucket is not None
    live = settings.realtime_enabled and not _behind_api_gateway(request) and websockets_served()
    multilingual = service.engine.multilingual
    return PageConfig(
        max_upload_bytes=max_upload,
        max_audio_seconds=settings.max_audio_seconds,
        jobs_enabled=jobs,
        max_job_upload_bytes=settings.max_job_upload_bytes if jobs else None,
        max_job_audio_seconds=settings.max_job_audio_seconds if jobs else None,
        auth_required=bool(settings.api_keys),
        translate=multilingual,
        languages=[Language(code=c, name=n) for c, n in LANGUAGES.items()] if multilingual else [],
        live=live,
        live_max_session_s=settings.realtime_max_session_s if live else None,
        engine=service.engine.name,
        model=service.engine.model,
    )


def _content_security_policy(settings: Settings) -> str:
    # The page runs only its own script and style; it calls this server, and with a bucket
    # S3's presigned POST URL, which is on another origin.
    upload_origins = ["https://*.amazonaws.com"]
    if settings.s3_endpoint_url:
        endpoint = urlsplit(settings.s3_endpoint_url)
        upload_origins = [f"{endpoint.scheme}://{endpoint.netloc}"]
    connect = " ".join(["'self'", *upload_origins]) if settings.bucket else "'self'"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"media-src 'self' blob:; connect-src {connect}; form-action 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


@router.get("/", include_in_schema=False)
async def page(request: Request, settings: SettingsDep) -> Response:
    if _behind_api_gateway(request):
        client_path = request.scope["aws.event"].get("requestContext", {}).get("path") or "/"
        if not client_path.endswith("/"):
            # "/Prod" without its slash: the page's relative URLs would leave the stage.
            return RedirectResponse(client_path.rsplit("/", 1)[-1] + "/", status_code=308)
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": _content_security_policy(settings),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        # Rendered as every 404 is, with type not_found.
        listed = ", ".join(sorted(ASSETS))
        raise HTTPException(404, f"No asset named {name[:40]!r}; the assets are: {listed}.")
    path, media_type = ASSETS[name]
    # no-cache: revalidated with the ETag each time, so a deploy is seen at once.
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    # Relative to /docs, so that they stay under a stage prefix.
    return get_swagger_ui_html(
        openapi_url="openapi.json",
        title="ChatServer API",
        swagger_js_url="static/swagger-ui-bundle.js",
        swagger_css_url="static/swagger-ui.css",
        swagger_favicon_url="data:,",
    )
