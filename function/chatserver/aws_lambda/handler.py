"""The AWS Lambda entry point: ``chatserver.aws_lambda.handler.handler``, one function for every event.

Everything expensive happens at import, in Lambda's init phase, once per execution
environment: settings, logging, the engine with its model, the FastAPI app and its Mangum
adapter. Each invocation then only dispatches its event (dispatch.py).
"""

import logging
import os
import time
from functools import cache

from ..core.logs import configure_logging
from ..core.settings import get_settings
from ..speech.service import TranscriptionService

logger = logging.getLogger(__name__)


def _in_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


settings = get_settings()
configure_logging(settings.log_level, settings.log_json or _in_lambda())
_init_started = time.perf_counter()
# The model loads in a thread of its own while the rest of the function is imported: the two
# overlap where the function has more than one vCPU (Lambda gives one per 1,769 MB).
_loading = TranscriptionService.load_in_background(settings)

from ..api.app import create_app  # noqa: E402
from ..jobs.chunk_worker import ChunkWorker  # noqa: E402
from ..jobs.runner import JobRunner  # noqa: E402
from .dispatch import Dispatcher  # noqa: E402
from .gateways import asgi_handler  # noqa: E402

service = _loading.result()
asgi = asgi_handler(create_app(settings, service), settings.api_base_path)
# Mangum logs every request at INFO; the access log (middleware.RequestContext) says more.
logging.getLogger("mangum.http").setLevel(logging.WARNING)
_init_s = time.perf_counter() - _init_started
logger.info(
    "engine, model and app ready in %.2f s: engine %s, model %s",
    _init_s,
    service.engine.name,
    service.engine.model,
    extra={"time_s": round(_init_s, 3)},
)


@cache
def job_runner() -> JobRunner:
    # Built on the first S3 or SQS event rather than at init: a function that only serves the
    # API never creates an S3 client, and S3 work is asynchronous, so its first call can wait.
    return JobRunner(service, settings)


@cache
def chunk_worker() -> ChunkWorker:
    return ChunkWorker(job_runner())


# The image's CMD.
handler = Dispatcher(asgi, job_runner, chunk_worker)
