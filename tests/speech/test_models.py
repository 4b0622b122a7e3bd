"""The embedded model: joined from the two pinned packages and sha256-checked."""

import hashlib

import pytest

from chatserver.speech.engines import models


def test_packaged_model_is_joined_and_verified(tmp_path):
    target = models.ensure_packaged_model(tmp_path)
    model_bin = target / "model.bin"
    assert model_bin.stat().st_size == models.PACKAGED_SIZE
    digest = hashlib.sha256(model_bin.read_bytes()).hexdigest()
    assert digest == models.PACKAGED_SHA256
    assert {p.name for p in target.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    # World-readable: the image is built as root and served by Lambda's own user.
    assert model_bin.stat().st_mode & 0o044 == 0o044
    assert models.ensure_packaged_model(tmp_path) == target


def test_a_wrong_hash_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "PACKAGED_SHA256", "0" * 64)
    with pytest.raises(models.ModelIntegrityError, match="expected 0000"):
        models.ensure_packaged_model(tmp_path)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert "model.bin" not in leftovers
    assert not [name for name in leftovers if name.startswith(".model.bin.")]


def test_openai_checkpoint_is_derived_offline(tmp_path):
    resolved = models.resolve("base", "openai-whisper", tmp_path)
    assert resolved.location.endswith(".pt")
    import torch

    checkpoint = torch.load(resolved.location, map_location="cpu", weights_only=True)
    assert checkpoint["dims"]["n_audio_layer"] == 6
    assert checkpoint["dims"]["n_vocab"] == 51865


def test_names_and_paths_resolve(tmp_path):
    assert models.resolve("small", "faster-whisper", tmp_path).location == "small"
    assert models.resolve("tiny.en", "faster-whisper", tmp_path).multilingual is False
    local = tmp_path / "my-model"
    local.mkdir()
    resolved = models.resolve(str(local), "faster-whisper", tmp_path)
    assert resolved.location == str(local)
