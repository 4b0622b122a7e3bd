"""The HTTP server: uvicorn with read deadlines (api/deadlines.py), started by ``python -m chatserver``.

uvicorn's CLI cannot take another protocol class, hence this entry point.
"""

import argparse
import ctypes
import logging
import os

import uvicorn

from .api.deadlines import protocol_with_deadlines
from .core.settings import get_settings

logger = logging.getLogger(__name__)


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """What MALLOC_ARENA_MAX=2 does in the image, for a server started by hand.

    glibc gives each thread that transcribes an arena of its own and keeps what it freed there:
    with two transcriptions at once RSS stayed 18% higher after the load test (bench/). Only
    arenas made after this call are limited, so it runs before the model loads.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        logger.info("not glibc: malloc arenas left as they are")
        return
    libc.mallopt(-8, arenas)  # M_ARENA_MAX


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chatserver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = get_settings()
    _limit_malloc_arenas()
    from .main import app  # loads the model and configures logging: after the arguments parse

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=protocol_with_deadlines(settings),
        # Live dictation (/v1/realtime): the websockets library's protocol, and no message larger
        # than two base64 appends at the limit, which the session refuses with an error event; a
        # larger one closes the connection (1009) before it is held in memory.
        ws="websockets-sansio",
        ws_max_size=2 * (settings.realtime_max_append_bytes * 4 // 3) + 64 * 1024,
        # RequestContext writes the access log, with request ids and 499/408 where they apply.
        access_log=False,
        log_config=None,  # our handlers (logs.py) on the root logger, uvicorn's lines included
    )
    logger.info(
        "serving on http://%s:%d (header deadline %g s, body deadline %g s, %d uploads at once)",
        args.host,
        args.port,
        settings.header_timeout_s,
        settings.body_timeout_s,
        settings.max_receiving_uploads,
    )
    uvicorn.Server(config).run()
