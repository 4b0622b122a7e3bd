"""A view of a loaded faster-whisper model whose encoder window is sized to the piece.

faster-whisper 1.2.1 pads every window to 30 s and cannot do it itself (its ``chunk_length``
pads back to 30 s and rewrites the model's one shared feature extractor), so each call gets its
own view of the model (``SizedWindow``) sharing only the weights.

The encoder runs on the sized window only; the decoder sees at least ``WindowRule.decoder_min_s``:
past the window's own frames it gets the encoding of a silent 30 s window (``silent_window``),
computed once per model. Whisper's decoder was trained on 30 s of encoder output: given only a
5 s window it went wrong (corpus WER 0.729), given the same window followed by the silent
encoding it was as accurate as the bare engine (README, "How a recording is cut").
"""

import copy
import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from .base import FULL_WINDOW_FRAMES

logger = logging.getLogger(__name__)


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


def silent_window(model: WhisperModel, cache_dir: Path, key: str) -> np.ndarray:
    """The encoder's output for a 30 s window of silence, shape (1, positions, width).

    A 30 s encode costs 0.6 s on one thread, so it is kept in ``cache_dir`` (``key`` names the
    weights and precision it comes from) and read back at the next start: the Docker build
    computes it with the model (chatserver.prepare). Where the directory is read-only it is
    computed at every start instead.
    """
    path = cache_dir / f"silent-window-{key}.npy"
    try:
        encoded = np.load(path, allow_pickle=False)
        if encoded.ndim == 3 and encoded.shape[1] == FULL_WINDOW_FRAMES // 2 and encoded.dtype == np.float32:
            return encoded
        logger.warning("%s has shape %s: computed again", path, encoded.shape)
    except (OSError, ValueError) as exc:  # absent, truncated or not an array
        logger.info("no silent window encoding at %s (%s): computing it", path, type(exc).__name__)
    features = model.feature_extractor(np.zeros(FULL_WINDOW_FRAMES * 160, dtype=np.float32))
    encoded = np.array(model.encode(features[..., :FULL_WINDOW_FRAMES]), dtype=np.float32)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=cache_dir, prefix=".silent-", suffix=".npy", delete=False
        ) as out:
            np.save(out, encoded)
        os.chmod(out.name, 0o644)  # built as root, served by another user (models.py)
        os.replace(out.name, path)
    except OSError as exc:
        logger.warning("could not keep the silent window encoding in %s: %s", cache_dir, exc)
    return encoded


class SizedWindow(WhisperModel):
    """A view of a loaded model whose windows are ``frames`` long; only the weights are shared.

    Built per call, so no call or worker sees another's window (faster-whisper's own
    ``chunk_length`` rewrites the one shared feature extractor).
    """

    def __init__(
        self,
        model: WhisperModel,
        frames: int,
        encodings: Encodings,
        silence: np.ndarray | None,
        decoder_frames: int,
    ) -> None:  # not super()
        self.__dict__.update(model.__dict__)
        self.feature_extractor = copy.copy(model.feature_extractor)
        self.feature_extractor.nb_max_frames = frames
        self.feature_extractor.n_samples = frames * self.feature_extractor.hop_length
        self._frames = frames
        self._windows = 0
        self._encodings = encodings
        # The silent encoding up to what the decoder is to see (encoder positions are 2 frames).
        self._silence = None if silence is None else silence[:, : decoder_frames // 2]
        self._detecting = False
        self._keep = True

    def encode(self, features: np.ndarray) -> Any:
        # generate_segments pads every window to 3000 frames; the encoder sees only ours.
        window = features[..., : self._frames]
        if self._detecting:
            encoded = self._full_window(super().encode(window))
            if self._keep:
                self._encodings.keep(window, encoded)
            return encoded
        self._windows += 1
        if self._windows > 1:
            # On a short tail a sized window is where Whisper ran to the token limit through
            # every fallback (issue 9): the full window decodes the whole piece instead.
            raise TailWindow()
        kept = self._encodings.take(window)
        return kept if kept is not None else self._full_window(super().encode(window))

    def _full_window(self, encoded: Any) -> ctranslate2.StorageView:
        """The window's encoding, followed by the silent window's from where it ends."""
        if self._silence is None or self._frames // 2 >= self._silence.shape[1]:
            return encoded
        own = np.asarray(encoded)
        # from_array keeps a reference to the joined array, so it lives as long as the view.
        return ctranslate2.StorageView.from_array(
            np.concatenate([own, self._silence[:, own.shape[1] :]], axis=1)
        )

    def detect_language_of(self, audio: np.ndarray, keep: bool = True) -> list[tuple[str, float]]:
        """Language probabilities, most likely first; ``keep``: the encoding is kept for the
        decoding of this audio in this window that follows."""
        # The features cut as transcribe() cuts its first window (without the last frame, which
        # comes from padding), so that decoding this audio next finds the encoding.
        features = self.feature_extractor(audio)[..., :-1]
        self._detecting, self._keep = True, keep
        try:
            return self.detect_language(features=features)[2]
        finally:
            self._detecting = False
