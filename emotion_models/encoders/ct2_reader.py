"""A reader for CTranslate2's ``model.bin`` (our own, NumPy only).

The format, as CTranslate2 writes it (``ModelSpec._serialize``) and reads it (``Model::load``),
little-endian throughout:

- ``uint32`` binary version (we read 1 to 6);
- version >= 2: the spec name (a *string*) and ``uint32`` spec revision;
- ``uint32`` number of variables, then per variable: name (*string*), ``uint8`` rank,
  ``rank x uint32`` dimensions, then version >= 4: ``uint8`` dtype id + ``uint32`` byte count,
  version < 4: ``uint8`` item size + ``uint32`` element count; then the raw bytes;
- version >= 3: ``uint32`` number of aliases, each an alias name and the variable it points to.

A *string* is a ``uint16`` length (counting a trailing NUL) followed by that many bytes.
Dtype ids follow CTranslate2's ``DataType`` enum: float32, int8, int16, int32, float16, bfloat16.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emotune.errors import ModelFileError

__all__ = ["CT2Model", "read_model_bin"]

_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_LEGACY_ITEM_SIZE = {4: "float32", 2: "int16", 1: "int8"}
_MAX_BINARY_VERSION = 6


@dataclass
class CT2Model:
    """The variables of a CTranslate2 model: ``variables[name] -> array`` (aliases resolved)."""

    binary_version: int
    spec: str
    spec_revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise KeyError(f"variable {name!r} not in the {self.spec} model")
        return self.variables[target]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.aliases.get(name, name) in self.variables

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in (*self.variables, *self.aliases) if n.startswith(prefix))


class _Reader:
    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle = handle
        self.path = path

    def take(self, n: int) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise ModelFileError(
                f"{self.path} is truncated: wanted {n} bytes at offset {self.handle.tell() - len(data)}, "
                f"got {len(data)}"
            )
        return data

    def uint(self, fmt: str) -> int:
        return int(struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0])

    def string(self) -> str:
        raw = self.take(self.uint("H"))
        return raw.split(b"\0", 1)[0].decode("utf-8")


def _to_numpy(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":  # NumPy has no bfloat16: widen to float32 (bfloat16 is float32's top half)
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def read_model_bin(path: str | Path) -> CT2Model:
    """Read every variable of ``path`` (a CTranslate2 ``model.bin``) into NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"CTranslate2 model file not found: {path}")
    with path.open("rb") as handle:
        reader = _Reader(handle, path)
        version = reader.uint("I")
        if not 1 <= version <= _MAX_BINARY_VERSION:
            raise ModelFileError(f"{path}: unsupported CTranslate2 binary version {version}")
        spec, revision = ("", 1)
        if version >= 2:
            spec = reader.string()
            revision = reader.uint("I")
        model = CT2Model(binary_version=version, spec=spec, spec_revision=revision)
        for _ in range(reader.uint("I")):
            name = reader.string()
            rank = reader.uint("B")
            shape = tuple(reader.uint("I") for _ in range(rank))
            if version >= 4:
                type_id = reader.uint("B")
                if type_id >= len(_DTYPES):
                    raise ModelFileError(f"{path}: variable {name} has unknown dtype id {type_id}")
                dtype = _DTYPES[type_id]
                n_bytes = reader.uint("I")
            else:
                item_size = reader.uint("B")
                if item_size not in _LEGACY_ITEM_SIZE:
                    raise ModelFileError(f"{path}: variable {name} has unknown item size {item_size}")
                dtype = _LEGACY_ITEM_SIZE[item_size]
                n_bytes = reader.uint("I") * item_size
            expected = int(np.prod(shape, dtype=np.int64)) * (2 if dtype == "bfloat16" else np.dtype(dtype).itemsize)
            if n_bytes != expected:
                raise ModelFileError(f"{path}: variable {name} of shape {shape} ({dtype}) has {n_bytes} bytes")
            model.variables[name] = _to_numpy(reader.take(n_bytes), dtype, shape)
        if version >= 3:
            for _ in range(reader.uint("I")):
                alias = reader.string()
                model.aliases[alias] = reader.string()
    return model
