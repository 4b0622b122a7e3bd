"""Audio in, words out: decoding, the cut at silences, the engines and the one service."""

import importlib
import sys
import threading
import types


class _LoadedOnFirstUse(types.ModuleType):
    """Stands in ``sys.modules`` for a module until one of its attributes is first asked for.

    Not ``importlib.util.LazyLoader``: its module loads as soon as another ``import`` of it looks
    at its ``__spec__``, which is every ``import`` statement.
    """

    _lock = threading.Lock()

    def __getattr__(self, attribute: str) -> object:  # only for what this stand-in lacks
        with self._lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            module = importlib.import_module(self.__name__)
        return getattr(module, attribute)


# PyAV: faster-whisper imports it for its own decoder, which the service never calls (FFmpeg's
# binary decodes, audio.py), and pcm.py needs it only once a live session sends audio. Loading
# its bundled FFmpeg libraries took 0.2 s of imports, 0.5 s of a start with a cold file cache
# (README: the first answer).
sys.modules.setdefault("av", _LoadedOnFirstUse("av"))
