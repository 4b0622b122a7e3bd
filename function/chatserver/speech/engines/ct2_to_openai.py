"""Turn a CTranslate2 Whisper model directory into an openai-whisper checkpoint offline.

The service ships one set of weights (CTranslate2, for faster-whisper), but the
openai-whisper engine only loads its own ``.pt`` format and would otherwise download it.
Both formats hold the same tensors under different names, CTranslate2 fusing some
attention projections, so the checkpoint can be derived locally with no network.

``model.bin`` is parsed here because ``ctranslate2``'s Python API cannot read weights
back. Its layout (binary version 6, written by ``ModelSpec._serialize`` in
``ctranslate2/specs/model_spec.py``), all little-endian:

    uint32 version, string spec_name, uint32 revision, uint32 variable_count,
    per variable: string name, uint8 rank, uint32 dims[rank], uint8 dtype_id,
                  uint32 byte_count, raw bytes
    uint32 alias_count, per alias: string alias, string target

where ``string`` is a uint16 length, counting a trailing NUL, then that many bytes.
"""

import contextlib
import logging
import os
import re
import struct
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Versions 4 to 6 store a dtype id and a byte count; older ones store an item size
# instead and predate Whisper support in CTranslate2, so no Whisper model uses them.
_SUPPORTED_VERSIONS = range(4, 7)

# Order of the DataType enum in ctranslate2's include/ctranslate2/types.h. numpy has
# no bfloat16, so it is read as raw uint16 and widened to float32.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BFLOAT16_ID = 5

_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


class CT2FormatError(ValueError):
    """The directory does not hold a CTranslate2 Whisper model this module can read."""


@dataclass(frozen=True)
class _Dims:
    # Field names and order are openai-whisper's ModelDimensions, which load_model()
    # rebuilds with ModelDimensions(**checkpoint["dims"]).
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


def read_ct2_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """Map every variable and alias in a CTranslate2 ``model.bin`` to a read-only array.

    The arrays are views of one memory map of the file, so reading copies nothing,
    except bfloat16 variables: numpy lacks the type, so they come back as float32.
    Aliases map to the same array as their target.
    """
    spec, variables = _read_model_bin(model_bin)
    logger.debug("read %d variables of %s from %s", len(variables), spec, model_bin)
    return variables


def convert_ct2_to_openai(ct2_dir: Path, out_path: Path) -> Path:
    """Write an openai-whisper checkpoint equal to the CTranslate2 model in ``ct2_dir``.

    The result loads with ``whisper.load_model(str(out_path))``. Float16 weights stay
    float16 (like OpenAI's own checkpoints); bfloat16 and int8/int16-quantized weights
    become float32. The file appears atomically, so a crash never leaves a partial
    checkpoint at ``out_path``. Returns ``out_path``.
    """
    started = time.perf_counter()
    spec, variables = _read_model_bin(Path(ct2_dir) / "model.bin")
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{ct2_dir} holds a {spec!r} model, not a Whisper model")

    dims = _dimensions(variables)
    state = _state_dict(variables, dims)
    del variables  # drops the memory map before the write; nothing below needs it

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save({"dims": asdict(dims), "model_state_dict": state}, out_path)
    logger.info(
        "converted %s to openai-whisper checkpoint %s (%.1f MB) in %.2f s: %s",
        ct2_dir,
        out_path,
        out_path.stat().st_size / 1e6,
        time.perf_counter() - started,
        dims,
    )
    return out_path


def _read_model_bin(model_bin: Path) -> tuple[str, dict[str, np.ndarray]]:
    # Headers are read with ordinary file I/O, touching only the bytes around each
    # variable; the data itself is mapped in place, never read into memory here.
    mapped = np.memmap(model_bin, dtype=np.uint8, mode="r")
    variables: dict[str, np.ndarray] = {}
    with open(model_bin, "rb") as f:
        version = _unpack(f, "<I")
        if version not in _SUPPORTED_VERSIONS:
            raise CT2FormatError(
                f"{model_bin}: CTranslate2 binary version {version} is not supported "
                f"(expected {_SUPPORTED_VERSIONS.start}-{_SUPPORTED_VERSIONS.stop - 1})"
            )
        spec = _read_string(f)
        revision = _unpack(f, "<I")
        for _ in range(_unpack(f, "<I")):
            name = _read_string(f)
            rank = _unpack(f, "<B")
            shape = struct.unpack(f"<{rank}I", _read_exact(f, 4 * rank))
            type_id = _unpack(f, "<B")
            num_bytes = _unpack(f, "<I")
            if type_id not in _DTYPES:
                raise CT2FormatError(f"{model_bin}: {name} has unknown dtype id {type_id}")
            dtype = _DTYPES[type_id]
            if num_bytes != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
                raise CT2FormatError(f"{model_bin}: {name} has {num_bytes} bytes for shape {shape}")
            offset = f.tell()
            if offset + num_bytes > mapped.size:
                raise CT2FormatError(f"{model_bin} is truncated inside {name}")
            # Offsets are not aligned to the item size; numpy handles unaligned views.
            data = mapped[offset : offset + num_bytes].view(dtype).reshape(shape)
            if type_id == _BFLOAT16_ID:
                # bfloat16 is the top half of a float32, so widening is an exact shift.
                # It costs a copy, but only for the rare bfloat16 models.
                data = (data.astype(np.uint32) << 16).view(np.float32)
            variables[name] = data
            f.seek(num_bytes, os.SEEK_CUR)
        for _ in range(_unpack(f, "<I")):
            alias = _read_string(f)
            target = _read_string(f)
            variables[alias] = variables[target]
    logger.debug("%s: binary version %d, %s revision %d", model_bin, version, spec, revision)
    return spec, variables


def _read_exact(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise CT2FormatError(f"{f.name} is truncated")
    return data


def _unpack(f: BinaryIO, fmt: str) -> int:
    (value,) = struct.unpack(fmt, _read_exact(f, struct.calcsize(fmt)))
    return int(value)


def _read_string(f: BinaryIO) -> str:
    raw = _read_exact(f, _unpack(f, "<H"))
    return raw.rstrip(b"\0").decode("utf-8")


def _dimensions(v: dict[str, np.ndarray]) -> _Dims:
    n_audio_ctx, n_audio_state = _need(v, "encoder/position_encodings/encodings").shape
    n_text_ctx, n_text_state = _need(v, "decoder/position_encodings/encodings").shape
    return _Dims(
        n_mels=_need(v, "encoder/conv1/weight").shape[1],  # (out, n_mels, kernel)
        n_audio_ctx=int(n_audio_ctx),
        n_audio_state=int(n_audio_state),
        n_audio_head=int(_need(v, "encoder/num_heads")),
        n_audio_layer=_layer_count(v, "encoder"),
        n_vocab=_need(v, "decoder/embeddings/weight").shape[0],
        n_text_ctx=int(n_text_ctx),
        n_text_state=int(n_text_state),
        n_text_head=int(_need(v, "decoder/num_heads")),
        n_text_layer=_layer_count(v, "decoder"),
    )


def _layer_count(v: dict[str, np.ndarray], stack: str) -> int:
    indices = {int(m[2]) for name in v if (m := _LAYER.match(name)) and m[1] == stack}
    if not indices or indices != set(range(len(indices))):
        raise CT2FormatError(f"model.bin has layers {sorted(indices)} in the {stack}")
    return len(indices)


def _state_dict(v: dict[str, np.ndarray], dims: _Dims) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}

    def put(key: str, array: np.ndarray) -> None:
        state[key] = torch.from_numpy(array)

    def linear(prefix: str, name: str) -> None:
        put(f"{prefix}.weight", _to_float(v, f"{name}/weight"))
        put(f"{prefix}.bias", _to_float(v, f"{name}/bias"))

    def layer_norm(prefix: str, name: str) -> None:
        put(f"{prefix}.weight", _to_float(v, f"{name}/gamma"))
        put(f"{prefix}.bias", _to_float(v, f"{name}/beta"))

    def split_linear(prefixes: tuple[str, ...], name: str) -> None:
        # CTranslate2 fuses projections by stacking their rows: split along dim 0.
        # openai-whisper's key projection has no bias; CTranslate2 stores zeros there,
        # and a key bias cancels in the softmax anyway, so dropping it is exact.
        rows, remainder = divmod(_need(v, f"{name}/weight").shape[0], len(prefixes))
        if remainder:
            raise CT2FormatError(f"{name} does not split into {len(prefixes)} projections")
        for k, prefix in enumerate(prefixes):
            part = slice(k * rows, (k + 1) * rows)
            put(f"{prefix}.weight", _to_float(v, f"{name}/weight", part))
            if not prefix.endswith(".key"):
                put(f"{prefix}.bias", _to_float(v, f"{name}/bias", part))

    def attention_block(prefix: str, name: str) -> None:
        layer_norm(f"{prefix}.attn_ln", f"{name}/self_attention/layer_norm")
        split_linear(
            (f"{prefix}.attn.query", f"{prefix}.attn.key", f"{prefix}.attn.value"),
            f"{name}/self_attention/linear_0",
        )
        linear(f"{prefix}.attn.out", f"{name}/self_attention/linear_1")
        layer_norm(f"{prefix}.mlp_ln", f"{name}/ffn/layer_norm")
        linear(f"{prefix}.mlp.0", f"{name}/ffn/linear_0")
        linear(f"{prefix}.mlp.2", f"{name}/ffn/linear_1")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    put(
        "encoder.positional_embedding",
        _to_float(v, "encoder/position_encodings/encodings"),
    )
    for i in range(dims.n_audio_layer):
        attention_block(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    layer_norm("encoder.ln_post", "encoder/layer_norm")

    # openai-whisper has no output projection: it multiplies by the token embedding,
    # so an untied projection could not be represented and must be refused.
    embedding = _need(v, "decoder/embeddings/weight")
    projection = v.get("decoder/projection/weight", embedding)
    if projection is not embedding and not np.array_equal(projection, embedding):
        raise CT2FormatError("decoder/projection is not tied to decoder/embeddings")
    put("decoder.token_embedding.weight", _to_float(v, "decoder/embeddings/weight"))
    put(
        "decoder.positional_embedding",
        _to_float(v, "decoder/position_encodings/encodings"),
    )
    for i in range(dims.n_text_layer):
        prefix, name = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        attention_block(prefix, name)
        layer_norm(f"{prefix}.cross_attn_ln", f"{name}/attention/layer_norm")
        linear(f"{prefix}.cross_attn.query", f"{name}/attention/linear_0")
        split_linear(
            (f"{prefix}.cross_attn.key", f"{prefix}.cross_attn.value"),
            f"{name}/attention/linear_1",
        )
        linear(f"{prefix}.cross_attn.out", f"{name}/attention/linear_2")
    layer_norm("decoder.ln", "decoder/layer_norm")
    return state


def _need(v: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in v:
        raise CT2FormatError(f"model.bin has no {name}; is this a Whisper model?")
    return v[name]


def _to_float(v: dict[str, np.ndarray], name: str, rows: slice = slice(None)) -> np.ndarray:
    """Copy ``rows`` of a variable out of the memory map as float, undoing quantization.

    Each result owns its memory: tensors over the map would be read-only and keep the
    file mapped, and views of a fused matrix would make torch.save store all of it.
    """
    array = _need(v, name)
    if array.ndim:
        array = array[rows]
    if array.dtype.kind == "f":
        return np.array(array, dtype=array.dtype.newbyteorder("="))
    if f"{name}_zero" in v:
        raise CT2FormatError(f"{name} uses AWQ-style zero points, which are not supported")
    scale_name = f"{name}_scale"
    if scale_name not in v:
        raise CT2FormatError(f"{name} is {array.dtype} without a {scale_name}")
    # CTranslate2 quantizes as round(w * scale), with one scale per output row for int8
    # and one for the whole matrix for int16.
    scale = _to_float(v, scale_name, rows).astype(np.float32)
    if scale.ndim:
        scale = scale.reshape(-1, *(1,) * (array.ndim - 1))
    return array.astype(np.float32) / scale


def _atomic_torch_save(checkpoint: dict[str, object], out_path: Path) -> None:
    # A temporary file in the target's directory makes os.replace a rename within one
    # filesystem, so the checkpoint appears whole or not at all.
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            # mkstemp creates the file 0600; a checkpoint built by root in an image must
            # stay readable by the unprivileged user that serves it.
            os.fchmod(tmp.fileno(), 0o644)
            torch.save(checkpoint, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
