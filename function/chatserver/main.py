"""The uvicorn entry point: ``uvicorn chatserver.main:app``."""

from .api.app import create_app
from .core.logs import configure_logging
from .core.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level, settings.log_json)
app = create_app(settings)
