"""The uvicorn entry point: ``uvicorn chatserver.main:app``.

The model loads in a thread of its own while the HTTP side is imported: on two cores the two
overlap (README: process start to first answer).
"""

from .core.logs import configure_logging
from .core.settings import get_settings
from .speech.service import TranscriptionService

settings = get_settings()
configure_logging(settings.log_level, settings.log_json)
loading = TranscriptionService.load_in_background(settings)

from .api.app import create_app  # noqa: E402  (imported while the model loads)

app = create_app(settings, loading.result())
