"""Atomic file writes: temp file in the same folder, then rename.

A reader (a CI step, a browser, `parity report`) never sees half a file, and
an interrupted write leaves the previous file as it was. Every report and
cache writer should go through here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _replacing(path):
    """An open temporary file beside ``path`` that becomes ``path`` (flushed, fsynced, renamed) when the block
    ends, and is removed when it raises (Ctrl-C included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path, data: str | bytes, encoding: str = "utf-8") -> Path:
    with _replacing(path) as f:
        f.write(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


def write_npz_atomic(path, arrays) -> Path:
    """numpy arrays as one npz, written atomically (workers and readers poll for the final name).

    Array by array into the temporary file, as np.savez does (uncompressed, zip64), never the whole archive
    in memory: a weight export is the model's size. ``arrays`` may be a mapping that makes each array when
    asked (one in flight)."""
    import zipfile

    import numpy as np

    with _replacing(path) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in arrays:
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arrays[name]), allow_pickle=False)
    return Path(path)


@contextmanager
def temp_dir(beside, name: str | None = None):
    """A fresh folder next to ``beside`` (same filesystem, so renaming it into place is atomic),
    removed with whatever is left in it on the way out. ``name``: its name (a stale one from a
    killed run is cleared first); else a unique ``.tmp-*``."""
    parent = Path(beside).parent
    parent.mkdir(parents=True, exist_ok=True)
    if name is None:
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    else:
        tmp = parent / name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp, target, *, replace: bool) -> bool:
    """Move a finished folder into place with one rename: readers see the old folder or the new one.

    ``replace``: an existing ``target`` is removed first. Otherwise an existing one wins and the
    answer is False (a concurrent writer got there first)."""
    if replace:
        old = Path(target).with_name(f".{Path(target).name}.parity-old-{os.getpid()}")
        had = Path(target).exists()
        if had:  # swap: the old folder is moved aside first, removed once the new one is in place
            os.replace(target, old)
        os.replace(tmp, target)
        if had:
            shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        os.rename(tmp, target)
        return True
    except OSError:
        return False


def remove_dir(folder) -> None:
    """Rename the folder aside, then delete it: readers never see a half-deleted one."""
    folder = Path(folder)
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}")
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)
