"""Extra runs a worker makes for `--explain`, next to the model it already loaded.

- the same batch once more: run-to-run spread (non-determinism);
- for each standard input the batch does not carry, the batch again with that
  input given explicitly as documented (zeros, ones, arange): if the outputs
  move, this framework fills the input differently;
- in the oracle's worker, the batch in float64.

Numpy in, numpy out: the parent turns these into the diagnosis.
"""

from __future__ import annotations

import numpy as np

# What transformers documents as the default for an input that is not given.
CANONICAL_DEFAULTS = {
    "token_type_ids": lambda ids: np.zeros_like(ids),
    "attention_mask": lambda ids: np.ones_like(ids),
    "position_ids": lambda ids: np.broadcast_to(np.arange(ids.shape[-1], dtype=ids.dtype), ids.shape).copy(),
}


def max_spread(a: dict, b: dict) -> dict:
    """Max abs difference per output between two runs (NaN-safe, padded positions included)."""
    out = {}
    for name, x in a.items():
        y = b.get(name)
        if y is None or np.shape(x) != np.shape(y) or not np.issubdtype(np.asarray(x).dtype, np.floating):
            continue
        d = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
        out[name] = float(np.nanmax(d)) if d.size else 0.0
    return out


def repeat(runner, arrays: dict, first: dict) -> dict:
    return max_spread(first, runner.run(arrays))


def defaults(runner, arrays: dict, first: dict) -> dict:
    """For each standard input the batch lacks: did giving the documented default change anything?"""
    ids = arrays.get("input_ids")
    if ids is None:
        return {}
    try:
        accepted = runner.input_names()
    except Exception:  # a model without an inspectable forward: nothing to probe
        return {}
    found = {}
    for key, make in CANONICAL_DEFAULTS.items():
        if key in arrays or key not in accepted:
            continue
        spread = max_spread(first, runner.run({**arrays, key: make(ids)}))
        worst = max(spread.values(), default=0.0)
        found[key] = {"explicit_default": _describe(key), "max_abs_change": worst,
                      "first_changed": next((n for n, v in spread.items() if v > 0), None)}
    return found


def _describe(key: str) -> str:
    return {"token_type_ids": "zeros", "attention_mask": "ones", "position_ids": "arange(seq_len)"}[key]


def explain(runner, arrays: dict, first: dict, float64: bool, probes: bool = True) -> tuple[dict, dict | None]:
    """All the extra runs for one framework; returns (info, float64 outputs or None). ``probes=False``: the
    float64 run alone (``--gate oracle`` without ``--explain``)."""
    info = {"received": list(arrays), "float64": None}
    if probes:
        info.update(repeat_spread=repeat(runner, arrays, first), defaults=defaults(runner, arrays, first))
    out64 = None
    if float64:  # last: it upcasts the model in place
        try:
            out64 = runner.run_float64(arrays)
            info["float64"] = "ok"
            info["float64_mode"] = getattr(runner, "float64_mode", None)
        except NotImplementedError as e:
            info["float64"] = str(e)
    return info, out64
