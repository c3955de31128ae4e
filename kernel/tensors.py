"""The ``.safetensors`` file format: named float tensors, read memory-mapped.

Two rooms read it and neither may import the other: :mod:`models.encoder`
(a sentence encoder's ``model.safetensors``) and :mod:`detection.semantic`
(the semantic stage's ``semantic_adapter.safetensors``, written by
``bench/train_semantic.py``). The format: an 8-byte little-endian header
length, a JSON header (per tensor its dtype, shape and byte offsets, and an
optional ``__metadata__`` table of strings), then the raw data.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from kernel.errors import CallshieldError

_DTYPES = {"F32": "<f4", "F16": "<f2"}
_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}
_MAX_HEADER = 100 * 1024 * 1024  # bytes; a longer header is a file that is not safetensors


class TensorFileError(CallshieldError):
    """A ``.safetensors`` file that cannot be read (missing, truncated, not the format).
    The message names the file (``model.safetensors is truncated``); the reader's
    caller says whose file it is."""

    code = "bad_tensor_file"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32/float16 tensors of a ``.safetensors`` file by name, memory-mapped
    (read-only; other dtypes are skipped). :class:`TensorFileError` when it cannot be read."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise TensorFileError(f"{path.name} is truncated")
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > _MAX_HEADER:
                raise TensorFileError(f"{path.name} has an implausible header")
            header = json.loads(fh.read(header_len))
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    except (OSError, ValueError) as exc:
        raise TensorFileError(f"cannot read {path.name}: {exc}") from exc
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") not in _DTYPES:
            continue
        begin, end = info["data_offsets"]
        if end > data.size:
            raise TensorFileError(f"{path.name} is truncated (tensor {name})")
        array = np.frombuffer(data[begin:end], dtype=_DTYPES[info["dtype"]])
        tensors[name] = array.reshape(info["shape"])
    return tensors


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write float32/float16 ``tensors`` as a ``.safetensors`` file (names sorted, data 8-byte aligned);
    a tensor of another dtype is a ``ValueError``."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        little = array.dtype.newbyteorder("<")
        if little not in _NAMES:
            raise ValueError(f"{name}: only float32 and float16 tensors are written, not {array.dtype}")
        blob = array.astype(little, copy=False).tobytes()
        header[name] = {"dtype": _NAMES[little], "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for blob in blobs:
            fh.write(blob)
