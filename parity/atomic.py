"""Atomic file writes: temp file in the same folder, then rename.

A reader (a CI step, a browser, `parity report`) never sees half a file, and
an interrupted write leaves the previous file as it was. Every report and
cache writer should go through here.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path, data: str | bytes, encoding: str = "utf-8") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: no temp file left behind
        tmp.unlink(missing_ok=True)
        raise
    return path
