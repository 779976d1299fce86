"""Conversion cache: converted weights kept under the user's cache directory.

A CI job that re-checks an unchanged checkpoint loads the TF / Flax / PyTorch
weights converted on the first run natively, skipping the conversion and the
source framework's import. Entries are keyed by the sha256 of the source
weights and config, the target class and the library versions; each is
written into a temporary folder and renamed into place (concurrent writers:
the first rename wins, the others discard theirs), and verified by size and
sha256 before use (a stale or corrupt entry is removed and rebuilt). Digests
of large files are remembered under ``digests/`` while their stat is
unchanged (``file_digest``), so a warm check does not read every weight file
again.

``PARITY_CACHE_DIR`` moves it (``off`` disables it); default
``$XDG_CACHE_HOME/parity/conversions`` or ``~/.cache/parity/conversions``.
Its ``xla/`` folder is JAX's persistent compilation cache (see
``compile_dir``), which XLA manages itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from parity.contracts.atomic import publish_dir, remove_dir, temp_dir, write_atomic
from parity.contracts import registry

FORMAT = 1
# An entry is keyed by these versions too: a new converter or framework may write other values.
VERSIONED = ("parity", "transformers") + registry.packages() + ("safetensors",)


def root() -> Path | None:
    value = os.environ.get("PARITY_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "none", "false") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parity" / "conversions"


def compile_dir() -> Path | None:
    """Where the Flax worker keeps XLA's compiled executables between checks (None: cache off).

    Flax models run op by op, and XLA compiles each op for its shapes on first
    use: about a second of MiniLM's Flax run on 2 cores. JAX keys each
    entry by the op's HLO, shapes, compile options, backend and jax/jaxlib
    versions, so a hit is the executable a fresh compile would build; an
    unreadable entry is compiled again (JAX warns and goes on).
    """
    base = root()
    return None if base is None else base / "xla"


def key(framework: str, spec, files: dict, versions: dict) -> str:
    """Everything that can change the converted weights, hashed."""
    sources = {name: meta["sha256"] for name, meta in files.items()
               if name == "config.json" or name.startswith(spec.weights.split(".")[0])}
    data = {"format": FORMAT, "framework": framework, "class": spec.class_name, "from": spec.converted_from,
            "via": spec.via, "weights": spec.weights, "files": sources,
            "versions": {k: versions.get(k) for k in VERSIONED}}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


DIGEST_MIN_BYTES = 1 << 20  # smaller files hash faster than their record reads
SETTLED_SECONDS = 2.0       # a file changed this recently may change again within one timestamp tick


def file_digest(path: Path) -> str:
    """sha256 of ``path``, remembered for a large file by its stat, as git's index does.

    A record is used only while the file's device, inode, size, mtime and ctime
    are all unchanged (any write changes ctime, which no user call can set back),
    and is written only for a file last changed over SETTLED_SECONDS before it
    was hashed, so a write within the same coarse timestamp tick cannot hide.
    """
    base = root()
    st = path.stat()
    if base is None or st.st_size < DIGEST_MIN_BYTES:
        return sha256(path)
    stamp = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    record = base / "digests" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")
    try:
        data = json.loads(record.read_text())
        if data["stamp"] == stamp and len(data["sha256"]) == 64:
            return data["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    started = time.time_ns()
    digest = sha256(path)
    after = path.stat()
    settled = started - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_SECONDS * 1e9
    if settled and [after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns] == stamp:
        try:  # readers see the old record or the new one, never half of one
            write_atomic(record, json.dumps({"path": str(path.resolve()), "stamp": stamp, "sha256": digest}))
        except OSError:
            pass  # a read-only cache costs only the hashing
    return digest


def lookup(framework: str, entry_key: str) -> Path | None:
    """The entry folder when it is complete and intact; a damaged entry is removed."""
    base = root()
    if base is None:
        return None
    folder = base / entry_key
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        weights = folder / registry.get(framework).native_file
        if weights.stat().st_size != meta["bytes"] or file_digest(weights) != meta["sha256"]:
            raise ValueError("weights do not match meta.json")
    except (OSError, ValueError, KeyError):
        remove_dir(folder)
        return None
    return folder


def load_meta(folder) -> dict:
    return json.loads((Path(folder) / "meta.json").read_text())


def store(framework: str, folder: Path, save, load_report: dict) -> bool:
    """Write an entry: ``save(tmp)`` writes the native checkpoint; True when this call's copy landed."""
    folder = Path(folder)
    with temp_dir(folder) as tmp:
        save(tmp)
        weights = tmp / registry.get(framework).native_file
        meta = {"format": FORMAT, "framework": framework, "bytes": weights.stat().st_size,
                "sha256": sha256(weights), "load": load_report}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        return publish_dir(tmp, folder, replace=False)  # False when another writer got there first
