"""The samples that reach the engine are the reference implementation's, sample for sample."""

from pathlib import Path

import numpy as np
import pytest

from chatserver.speech.audio import decode, ffmpeg_executable
from tests.support.corpus import MANIFEST


@pytest.fixture(scope="module")
def reference_load_audio(tmp_path_factory: pytest.TempPathFactory):
    """openai-whisper's ``load_audio``, running the same FFmpeg binary as the service.

    ``load_audio`` runs whatever ``ffmpeg`` is on PATH; the one the service uses is put there.
    """
    import whisper.audio

    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "ffmpeg").symlink_to(ffmpeg_executable(None))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
        yield whisper.audio.load_audio


@pytest.mark.parametrize("item", MANIFEST, ids=lambda c: c.path.name)
def test_samples_equal_openai_whisper_load_audio(reference_load_audio, item):
    ours = decode(item.path, ffmpeg=ffmpeg_executable(None), timeout_s=60, max_seconds=600)
    reference = reference_load_audio(str(item.path))
    assert ours.dtype == reference.dtype == np.float32
    assert ours.shape == reference.shape
    np.testing.assert_array_equal(ours, reference)
    assert ours.size == pytest.approx(item.duration * 16_000, abs=16_000 * 0.05)
