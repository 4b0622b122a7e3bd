"""The FastAPI application, built once per process with its engine already loaded."""

import tempfile

from fastapi import Depends, FastAPI

from .. import __version__
from ..core.settings import Settings
from ..speech.service import TranscriptionService
from .auth import install_access_control
from .dependencies import one_file_part
from .error_handlers import install_error_handlers
from .fields import declared_fields_only
from .middleware import BodySizeLimit, HeadAsGet, RequestContext, UploadLimit
from .realtime.limits import SessionCount
from .routes.detect import router as detect_router
from .routes.health import router as health_router
from .routes.jobs import router as jobs_router
from .routes.openai import router as openai_router
from .routes.page import router as page_router
from .routes.realtime import router as realtime_router
from .routes.transcribe import router as transcribe_router
from .slots import Slots


def create_app(settings: Settings, service: TranscriptionService | None = None) -> FastAPI:
    # The model loads here, at import time of the entry point, never in a lifespan hook:
    # Mangum runs lifespan on every Lambda invocation.
    app = FastAPI(
        title="ChatServer",
        version=__version__,
        summary="Whisper speech-to-text.",
        # On every route: a second 'file' part is a 422, a field the route does not declare a 400.
        dependencies=[Depends(one_file_part), Depends(declared_fields_only)],
        # FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN: page.py serves
        # /docs from packaged assets instead.
        docs_url=None,
        redoc_url=None,
    )
    if settings.tmp_dir is not None:
        # Starlette spools uploads over 1 MB with tempfile's default directory and offers no
        # other: point it at CHATSERVER_TMP_DIR, where every upload of this process belongs.
        tempfile.tempdir = str(settings.tmp_dir)
    app.state.settings = settings
    app.state.service = service or TranscriptionService.from_settings(settings)
    app.state.slots = Slots(settings.max_concurrent_jobs, settings.max_queued_jobs)
    app.state.live_sessions = SessionCount(settings.realtime_max_sessions, settings.retry_after_s)
    app.include_router(transcribe_router)
    app.include_router(health_router)
    app.include_router(jobs_router)
    app.include_router(detect_router)
    app.include_router(openai_router)
    app.include_router(page_router)
    app.include_router(realtime_router)  # a WebSocket: not in the OpenAPI document
    install_error_handlers(app)
    # The count of uploads being received inside the size limit, so that a body refused by
    # its Content-Length is never counted.
    app.add_middleware(
        UploadLimit, max_uploads=settings.max_receiving_uploads, retry_after_s=settings.retry_after_s
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    # API keys, then CORS around them (auth.py says why); both inside RequestContext, so that
    # their answers carry a request id and are logged.
    install_access_control(app, settings)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestContext)
    return app
