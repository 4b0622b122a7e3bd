"""A view of a loaded faster-whisper model whose encoder window is sized to the piece.

faster-whisper 1.2.1 pads every window to 30 s and cannot do it itself (its ``chunk_length``
pads back to 30 s and rewrites the model's one shared feature extractor), so each call gets its
own view of the model (``SizedWindow``) sharing only the weights.
"""

import copy
import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from faster_whisper import WhisperModel


class TailWindow(Exception):
    """A sized window did not reach the end of its piece: Whisper wants a second window."""


class Encodings:
    """Encoder outputs that a language detection kept for the decoding that follows it.

    The service detects a voice note's language on exactly the piece it decodes next, so both
    encode the very same window: the decoding takes the detection's (once; a few are kept, the
    oldest dropped first) and saves one encoder pass.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(window: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(window).tobytes(), digest_size=16).digest()

    def keep(self, window: np.ndarray, encoded: Any) -> None:
        with self._lock:
            self._items[self._key(window)] = encoded
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def take(self, window: np.ndarray) -> Any | None:
        with self._lock:
            if not self._items:  # a language was given: nothing kept, no window to hash
                return None
            return self._items.pop(self._key(window), None)


class SizedWindow(WhisperModel):
    """A view of a loaded model whose windows are ``frames`` long; only the weights are shared.

    Built per call, so no call or worker sees another's window (faster-whisper's own
    ``chunk_length`` rewrites the one shared feature extractor).
    """

    def __init__(self, model: WhisperModel, frames: int, encodings: Encodings) -> None:  # not super()
        self.__dict__.update(model.__dict__)
        self.feature_extractor = copy.copy(model.feature_extractor)
        self.feature_extractor.nb_max_frames = frames
        self.feature_extractor.n_samples = frames * self.feature_extractor.hop_length
        self._frames = frames
        self._windows = 0
        self._encodings = encodings
        self._detecting = False

    def encode(self, features: np.ndarray) -> Any:
        # generate_segments pads every window to 3000 frames; the encoder sees only ours.
        window = features[..., : self._frames]
        if self._detecting:
            encoded = super().encode(window)
            self._encodings.keep(window, encoded)
            return encoded
        self._windows += 1
        if self._windows > 1:
            # On a short tail a sized window is where Whisper ran to the token limit through
            # every fallback (issue 9): the full window decodes the whole piece instead.
            raise TailWindow()
        kept = self._encodings.take(window)
        return kept if kept is not None else super().encode(window)

    def detect_language_of(self, audio: np.ndarray) -> list[tuple[str, float]]:
        # The features cut as transcribe() cuts its first window (without the last frame, which
        # comes from padding), so that decoding this audio next finds the encoding.
        features = self.feature_extractor(audio)[..., :-1]
        self._detecting = True
        try:
            return self.detect_language(features=features)[2]
        finally:
            self._detecting = False
