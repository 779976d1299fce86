"""Results: the versioned JSON every report is rendered from.

``schema_version`` guards readers: an older file is upgraded on load, a
newer one is refused with a clear message rather than misread.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .errors import UsageError
from .runners import registry

SCHEMA_VERSION = 1
PACKAGES = ("parity", "transformers") + registry.packages() + ("numpy", "safetensors", "tokenizers")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def environment(devices: dict) -> dict:
    return {"versions": versions(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "devices": devices}


@dataclass
class Results:
    passed: bool
    exit_code: int
    task: str
    checkpoint: dict
    inputs: dict
    environment: dict
    config: dict
    frameworks: dict
    comparisons: list
    schema_version: int = SCHEMA_VERSION
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    seconds: dict = field(default_factory=dict)
    diagnosis: dict | None = None   # --explain (see diagnose.py)
    # False when the run was stopped (Ctrl-C) before every framework and comparison finished.
    complete: bool = True
    interrupted: bool = False
    conversion: dict | None = None   # parity convert only: from, to, output, weights comparison
    schedule: dict | None = None     # worker mode: how many workers ran at once and why (schedule.py)

    def to_dict(self) -> dict:
        d = asdict(self)
        for optional in ("conversion", "schedule"):  # convert only / worker mode only
            if d.get(optional) is None:
                d.pop(optional, None)
        return {"schema_version": d.pop("schema_version"), **d}

    def save(self, path) -> Path:
        """Write atomically (temp file + rename): a reader never sees half a file."""
        from .atomic import write_atomic

        return write_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> "Results":
        data = upgrade(dict(data))
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def load(cls, path) -> "Results":
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"results file {path} does not exist", "pass a results.json written by parity check") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"results file {path} is not valid JSON ({str(e).splitlines()[0]})",
                             "re-run parity check to write it again") from None
        if not isinstance(data, dict) or "schema_version" not in data:
            raise UsageError(f"{path} is not a parity results file (no schema_version)",
                             "pass a results.json written by parity check")
        return cls.from_dict(data)


def upgrade(data: dict) -> dict:
    """Bring an older results dict up to SCHEMA_VERSION; refuse newer ones."""
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise UsageError(f"results schema_version {version!r} is not valid", "re-run parity check to write it again")
    if version > SCHEMA_VERSION:
        raise UsageError(f"results schema_version {version} is newer than this parity understands ({SCHEMA_VERSION})",
                         "upgrade parity (pip install -U parity) to read it")
    return data
