"""The FastAPI application, built once per process with its engine already loaded."""

from fastapi import FastAPI

from .. import __version__
from ..service import TranscriptionService
from ..settings import Settings
from .error_handlers import install_error_handlers
from .health import router as health_router
from .jobs import router as jobs_router
from .middleware import BodySizeLimit, RequestContext
from .slots import Slots
from .transcribe import router as transcribe_router


def create_app(settings: Settings, service: TranscriptionService | None = None) -> FastAPI:
    # The model loads here, at import time of the entry point, never in a lifespan hook:
    # Mangum runs lifespan on every Lambda invocation.
    app = FastAPI(title="ChatServer", version=__version__, summary="Whisper speech-to-text.")
    app.state.settings = settings
    app.state.service = service or TranscriptionService.from_settings(settings)
    app.state.slots = Slots(settings.max_concurrent_jobs, settings.max_queued_jobs)
    app.include_router(transcribe_router)
    app.include_router(health_router)
    app.include_router(jobs_router)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestContext)
    return app
