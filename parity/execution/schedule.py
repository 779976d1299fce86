"""How many framework workers may run at once: all of them when memory allows, one at a time when it is short.

Workers load in parallel by default (wall time is the slowest framework, not the
sum), but three frameworks holding a few-hundred-MB checkpoint each, converted
copies included, can exceed a small machine. The estimate is deliberately
coarse: an idle worker's footprint after its imports plus a multiple of the
weights file (native load holds file pages and tensors; a conversion holds the
source tensors, the converted ones and the model).
"""

from __future__ import annotations

import os
from pathlib import Path

from parity.contracts import registry

NATIVE_FACTOR = 2    # weights file -> live tensors (+ page cache while reading)
CONVERT_FACTOR = 4   # source tensors + converted tensors + model, briefly all at once
HEADROOM = 0.8       # use at most this share of the memory the kernel reports available


def weights_bytes(spec) -> int:
    """Size of the file the worker reads (the conversion cache entry when it hits)."""
    if getattr(spec, "cache_hit", None):
        entry = Path(spec.cache_hit)
        return sum(p.stat().st_size for p in entry.rglob("*") if p.is_file()) if entry.exists() else 0
    path = Path(spec.path) / spec.weights
    if path.name.endswith(".index.json"):  # sharded: every shard in the folder
        return sum(p.stat().st_size for p in path.parent.glob(path.name.split(".index.json")[0] + "*")
                   if p.is_file() and not p.name.endswith(".json"))
    return path.stat().st_size if path.exists() else 0


def estimate(fw: str, spec) -> int:
    converting = bool(spec.converted_from) and not getattr(spec, "cache_hit", None)
    # A worker's resident memory after importing its framework and transformers: each descriptor's idle_bytes.
    return registry.get(fw).idle_bytes + weights_bytes(spec) * (CONVERT_FACTOR if converting else NATIVE_FACTOR)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or PARITY_MEMORY_BYTES when set (tests, containers with a limit)."""
    forced = os.environ.get("PARITY_MEMORY_BYTES")
    if forced:
        return int(forced)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def plan(specs: dict) -> dict:
    """{"parallel": bool, "max_workers": n, "estimate_bytes": {fw: n}, "available_bytes": n | None, "reason": str}."""
    est = {fw: estimate(fw, spec) for fw, spec in specs.items()}
    avail = available_bytes()
    total = sum(est.values())
    if avail is None:
        limit, reason = len(specs), "available memory unknown: all workers at once"
    elif total <= HEADROOM * avail:
        limit, reason = len(specs), (f"estimated {_gb(total)} fits in {HEADROOM:.0%} of the {_gb(avail)} "
                                     "available: all workers at once")
    else:
        limit, reason = 1, (f"estimated {_gb(total)} exceeds {HEADROOM:.0%} of the {_gb(avail)} available: "
                            "one worker at a time")
    return {"parallel": limit >= len(specs) and len(specs) > 1, "max_workers": max(1, limit),
            "estimate_bytes": est, "available_bytes": avail, "reason": reason}


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
