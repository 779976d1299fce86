"""Tokenized batches kept between checks, under the cache root's ``batches/``.

Tokenizing means importing transformers in the parent process: about 1.2
CPU-s, most of it transformers scanning its model folders at import, taken
from the cores the workers are importing their frameworks on. The batch
depends only on the checkpoint's non-weight files (tokenizer files, config),
the texts, the max length and the tokenizer libraries' versions, so a
re-check of an unchanged checkpoint reads the arrays back instead. Remote code
(--trust-remote-code) is never cached: its tokenizer may read anything.
Entries are npz files written atomically (a reader sees a whole entry or
none); an unreadable one is removed and rebuilt; past KEEP entries the least
recently used go.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

FORMAT = 1
KEEP = 256
# Files that hold weights only: a tokenizer never reads them, and hashing them is the costly part.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".pth", ".onnx", ".gguf",
                   ".npz", ".index")
LIBRARIES = ("transformers", "tokenizers", "sentencepiece", "protobuf", "tiktoken")


def _folder() -> Path | None:
    from parity.contracts import conversion_cache as cache

    base = cache.root()
    return None if base is None else base / "batches"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def key(files: dict, texts: list, max_length: int) -> str:
    """Everything that can change a tokenized batch, hashed (``files``: fingerprint name -> {sha256})."""
    data = {"format": FORMAT, "texts": list(texts), "max_length": max_length,
            "files": {name: meta["sha256"] for name, meta in files.items()
                      if not name.endswith(WEIGHT_SUFFIXES)},
            "versions": {name: _version(name) for name in LIBRARIES}}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def load(entry_key: str) -> tuple[dict, str] | None:
    """(arrays, tokenizer class name) of a stored batch, or None."""
    folder = _folder()
    if folder is None:
        return None
    path = folder / f"{entry_key}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.ascontiguousarray(data[name]) for name in data.files if name != "__meta__"}
            meta = json.loads(bytes(data["__meta__"]).decode())
        if meta.get("format") != FORMAT or not arrays:
            raise ValueError("entry of another format")
        os.utime(path)  # recently used: kept longest
        return arrays, meta["tokenizer"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):  # damaged: rebuilt
        path.unlink(missing_ok=True)
        return None


def store(entry_key: str, arrays: dict, tokenizer: str) -> bool:
    """Keep a batch; False when the cache is off or cannot be written (the check goes on)."""
    from parity.contracts.atomic import write_atomic

    folder = _folder()
    if folder is None:
        return False
    meta = json.dumps({"format": FORMAT, "tokenizer": tokenizer}).encode()
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(meta, dtype=np.uint8), **arrays)
    try:
        write_atomic(folder / f"{entry_key}.npz", buf.getvalue())
        _prune(folder)
    except OSError:
        return False
    return True


def _prune(folder: Path) -> None:
    entries = []
    for p in folder.glob("*.npz"):
        try:
            entries.append((p.stat().st_mtime, p))
        except FileNotFoundError:  # another check pruned it first
            pass
    for _, p in sorted(entries, reverse=True)[KEEP:]:
        p.unlink(missing_ok=True)
