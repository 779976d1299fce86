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
from parity.contracts.errors import UsageError

# A worker's peak beyond its imports, in multiples of its float32 weights: each descriptor's load_factor and
# convert_factor (measured, parity/contracts/frameworks/; 2 and 4 where not measured on a large model).
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


_HALF = ("float16", "bfloat16")


def float32_bytes(spec) -> int:
    """The weights as the model holds them: float32 (a float16 or bfloat16 file doubles when loaded)."""
    size = weights_bytes(spec)
    dtypes = set(filter(None, (getattr(spec, "weights_dtype", None) or "").split(",")))
    return size * 2 if dtypes and dtypes <= set(_HALF) else size


def factor(fw: str, spec) -> float:
    """The descriptor's multiple of the float32 weights: converting (no cached conversion) or loading."""
    converting = bool(spec.converted_from) and not getattr(spec, "cache_hit", None)
    desc = registry.get(fw)
    return desc.convert_factor if converting else desc.load_factor


def estimate(fw: str, spec, extra: int = 0) -> int:
    """A worker's peak: its framework after imports (the descriptor's idle_bytes), a multiple of its float32
    weights (factor), and ``extra`` (the outputs it holds, outputs_bytes)."""
    return int(registry.get(fw).idle_bytes + float32_bytes(spec) * factor(fw, spec) + extra)


def outputs_bytes(config: dict, batch: int, length: int, groups, float64: bool = False) -> int:
    """The outputs one worker holds and writes (float32; the float64 oracle's again at twice the size):
    hidden states per layer, attention maps (batch x heads x length^2 per layer), logits over the vocabulary."""
    def first(*keys):
        return next((config[k] for k in keys if isinstance(config.get(k), int)), 0)

    hidden, layers = first("hidden_size", "d_model", "n_embd"), first("num_hidden_layers", "n_layer", "num_layers")
    heads, vocab = first("num_attention_heads", "n_head", "num_heads"), first("vocab_size")
    n = batch * length * max(vocab, 1)
    if "hidden_states" in groups:
        n += (layers + 1) * batch * length * hidden
    if "attentions" in groups:
        n += layers * batch * heads * length * length
    return 4 * n * 2 * (3 if float64 else 1)  # held, and its copy on the way to the file


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


def plan(specs: dict, extra: dict | None = None) -> dict:
    """{"parallel": bool, "max_workers": n, "estimate_bytes": {fw: n}, "available_bytes": n | None, "reason": str}.

    ``extra``: {framework: bytes} beside its weights (outputs_bytes). One at a time runs them in ``specs``'
    order (the caller puts the reference first)."""
    est = {fw: estimate(fw, spec, (extra or {}).get(fw, 0)) for fw, spec in specs.items()}
    avail = available_bytes()
    total = sum(est.values())
    if avail is None:
        limit, reason = len(specs), "available memory unknown: all workers at once"
    elif total <= HEADROOM * avail:
        limit, reason = len(specs), (f"estimated {_gb(total)} fits in {HEADROOM:.0%} of the {_gb(avail)} "
                                     "available: all workers at once")
    else:
        limit, reason = 1, (f"estimated {_gb(total)} exceeds {HEADROOM:.0%} of the {_gb(avail)} available: "
                            f"one worker at a time, {next(iter(specs), '-')} first")
    return {"parallel": limit >= len(specs) and len(specs) > 1, "max_workers": max(1, limit),
            "estimate_bytes": est, "available_bytes": avail, "reason": reason}


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def refuse_if_too_big(specs: dict, extra: dict | None = None) -> None:
    """A UsageError before any worker starts when even one framework alone cannot fit in the available memory."""
    avail = available_bytes()
    if avail is None or not specs:
        return
    est = {fw: estimate(fw, spec, (extra or {}).get(fw, 0)) for fw, spec in specs.items()}
    fw = max(est, key=est.get)
    if est[fw] <= avail:
        return
    spec = specs[fw]
    converting = bool(spec.converted_from) and not getattr(spec, "cache_hit", None)
    raise UsageError(
        f"{fw} alone needs an estimated {_gb(est[fw])} and {_gb(avail)} is available: float32 weights "
        f"{_gb(float32_bytes(spec))} x {factor(fw, spec):g} ({'converting' if converting else 'loading'}), "
        f"{_gb(registry.get(fw).idle_bytes)} for the framework, {_gb((extra or {}).get(fw, 0))} of outputs",
        f"leave {fw} out of --frameworks, pass a smaller --batch-size or --max-length (or fewer --outputs), "
        "or run on a machine with more memory (PARITY_MEMORY_BYTES sets what parity counts as available)")
