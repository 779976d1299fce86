"""The noise-aware verdict (``--gate oracle``): is the candidate as close to the float64 truth as the reference is?

An element-wise tolerance cannot tell float32 noise from a defect on a deep, wide model: rounding accumulates
layer after layer and a few of millions of elements leave any fixed atol. The float64 run of the same model
is the truth both float32 runs approximate. The rule is the one torch._dynamo's ``same()`` applies when given
an ``fp64_ref`` (torch/_dynamo/utils.py, torch 2.13): after ``allclose`` fails,

    res_error = rmse(fp64_ref, res);  ref_error = rmse(fp64_ref, ref)
    passes = res_error <= multiplier * ref_error + tol / 10

with ``multiplier`` 2.0 for a float32 result and 3.0 for a tensor of under 1000 elements ("in the presence
of noise, noise might dominate our error metric for smaller tensors"). RMSE, not the max: one unlucky element
of float32 rounding does not decide, and a real defect (a scaled kernel, a shifted bias) moves every element
after it, so its RMSE is orders of magnitude above the reference's. Twice the reference's own error is what
an independent float32 evaluation order may cost; a drift is far beyond it. ``tol`` here is the output's
atol (the slack matters only when the reference is exact, RMSE 0).
"""

from __future__ import annotations

import math

import numpy as np

MULTIPLIER = 2.0        # torch._dynamo same(): float32 results
SMALL_MULTIPLIER = 3.0  # ... and tensors of under SMALL elements
SMALL = 1000


def rmse(actual, truth, valid=None) -> float:
    """Root mean squared error of ``actual`` against the float64 ``truth`` over the counted positions (``valid``,
    broadcastable), in float64 along the first axis; NaN when a counted value is not finite or none is counted."""
    a_all, t_all = np.asarray(actual), np.asarray(truth)
    keep_all = None if valid is None else np.broadcast_to(valid, t_all.shape)
    total, n = 0.0, 0
    for i in range(t_all.shape[0] if t_all.ndim else 1):
        a = a_all[i] if t_all.ndim else a_all
        t = t_all[i] if t_all.ndim else t_all
        d = np.asarray(a, np.float64) - np.asarray(t, np.float64)
        if keep_all is not None:
            d = d[np.asarray(keep_all[i] if t_all.ndim else keep_all, bool)]
        total += float(np.square(d).sum())
        n += d.size
    return math.sqrt(total / n) if n else float("nan")


def judge(ref, cand, truth, valid, atol: float) -> dict:
    """The oracle's row for one output: both distances to the float64 run, the multiple and its verdict."""
    ref_rmse, cand_rmse = rmse(ref, truth, valid), rmse(cand, truth, valid)
    counted = int(np.broadcast_to(valid, np.shape(truth)).sum()) if valid is not None else int(np.size(truth))
    multiplier = SMALL_MULTIPLIER if counted < SMALL else MULTIPLIER
    slack = atol / 10.0
    ok = math.isfinite(cand_rmse) and math.isfinite(ref_rmse) and cand_rmse <= multiplier * ref_rmse + slack
    return {"reference_rmse": ref_rmse, "candidate_rmse": cand_rmse, "multiplier": multiplier, "slack": slack,
            "passed": bool(ok)}


def apply_gate(row, gate: bool) -> None:
    """Under ``--gate oracle`` the row passes element-wise or by the oracle's rule (``same()``'s order: allclose
    first, then the float64 distances); an output the float64 run does not have keeps its element-wise verdict."""
    if not gate:
        return
    row.gate = {"kind": "oracle", "elementwise_passed": row.passed}
    if isinstance(row.oracle, dict):
        row.passed = row.passed or row.oracle["passed"]


def within_noise(comp: dict) -> bool:
    """A pair that failed element-wise while every failing output sits within the oracle's float32 noise."""
    failing = [r for r in comp["outputs"] if not (r.get("gate") or {}).get("elementwise_passed", r["passed"])]
    return bool(failing) and all((r.get("oracle") or {}).get("passed") for r in failing)
