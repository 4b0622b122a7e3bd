"""A stand-in around the real engine for tests that change one of its calls."""

from typing import Any

from chatserver.speech.engines import Engine


class EngineWrapper:
    """The real engine, except for the methods a subclass defines: every other attribute is the
    engine's own, so an attribute added to the Engine protocol needs no change here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)
