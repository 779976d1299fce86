"""A safetensors file as a mapping that reads one tensor at a time, for converters that walk a state dict.

transformers 4.57's PyTorch -> Flax loader reads every tensor of a safetensors file into a dict of jax
arrays, then converts each into a second dict: the float32 weights twice over (a 1.1B-parameter Llama:
8.8 GB) before the model holds them. Its converter only walks the mapping (``items()``, ``values()``,
``dtype``s, the key prefixes), so a mapping that reads each tensor when it is reached (plain reads,
numpy) and keeps none leaves one converted copy and one tensor in flight. The converted arrays are the
same (tested bit for bit). bfloat16 files keep transformers' own path (numpy has no bfloat16).
"""

from __future__ import annotations

from collections.abc import Mapping


_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U8": "u1", "BOOL": "?"}


class LazyTensors(Mapping):
    """``{name: numpy array}`` over a safetensors file, each array read on access and never kept. Read with
    plain file reads, not a memory map: mapped pages would count in the worker's resident memory until the
    file is closed (the whole file, once every tensor was read)."""

    def __init__(self, path: str):
        import json
        import struct

        self._path = path
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        self._base, self._entries = 8 + n, header

    def __getitem__(self, key):
        import numpy as np

        entry = self._entries[key]
        start, end = entry["data_offsets"]
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        with open(self._path, "rb") as f:
            f.seek(self._base + start)
            flat = np.fromfile(f, dtype=dtype, count=(end - start) // dtype.itemsize)
        return flat.reshape(entry["shape"])

    def __setitem__(self, key, value):  # the converter writes back its numpy copies: already numpy here
        pass

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)


def streamable(path: str) -> bool:
    """A single safetensors file whose dtypes numpy reads (no bfloat16)."""
    if not str(path).endswith(".safetensors"):
        return False
    try:
        entries = LazyTensors(path)._entries
    except (OSError, ValueError):
        return False
    return all(e.get("dtype") in _DTYPES for e in entries.values())
