"""Verdicts for a side that runs in reduced precision (a ``:bf16`` or ``:fp16`` loading variant).

An element-wise gate fails every healthy bf16 model: on the real all-MiniLM-L6-v2 in bf16 only 64-84 % of
the hidden-state elements pass torch.testing's own bf16 tolerance, while the mean error is 1 % of the mean
magnitude and the cosine >= 0.9999. So a pair where either side asked for bf16 / fp16 is judged otherwise:

- tolerances: torch.testing's defaults per dtype (``_DTYPE_PRECISIONS`` in torch/testing/_comparison.py,
  torch 2.x: float16 rtol 1e-3 atol 1e-5, bfloat16 rtol 1.6e-2 atol 1e-5), used when the check left
  --atol / --rtol / tolerances at parity's float32 defaults;
- the gate is statistical, after Polygraphy's ``--check-error-stat`` (elementwise, max, mean, median,
  quantile): each output records those statistics of |candidate - reference| over its counted elements and
  passes when ``mean |c - r| <= atol + rtol * mean |r|`` (torch.testing's closeness rule on the means);
- logits also need every *decided* position to agree on the top-1: a flip counts where the reference's
  margin between its top-1 and the candidate's pick exceeds that position's tolerance (a flip inside the
  tolerance is rounding); top-1 agreement and KL are recorded beside;
- generation (numerics.generation_compare) uses vLLM's ``check_logprobs_close`` rule: rows may part, but at
  the first differing token each side's token must lie in the other's top-``TOP_N`` scores.

``auto`` is not reduced precision here even when the library picks bf16: it asks whether the library's
default load still matches, so it is judged at the float32 defaults and a dtype difference is named.
"""

from __future__ import annotations

import numpy as np

from parity.contracts import variants

# torch.testing's {dtype: (rtol, atol)} (torch/testing/_comparison.py, _DTYPE_PRECISIONS; torch 2.13)
TOLERANCES = {"float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5)}
QUANTILE = 0.99   # the quantile recorded beside max, mean and median (Polygraphy's --error-quantile)
TOP_N = 5         # vLLM's tests compare NUM_LOG_PROBS = 5 top tokens per step


def pair_dtype(reference: str, candidate: str) -> str | None:
    """The reduced dtype a pair is judged in: the coarser of the two sides' explicit bf16 / fp16, or None."""
    found = {variants.dtype(k) for k in (reference, candidate)} & set(TOLERANCES)
    return max(found, key=lambda d: TOLERANCES[d][0]) if found else None


def tolerance(base, dtype: str | None, defaults: tuple):
    """``name -> (atol, rtol)`` for a pair in ``dtype``: the dtype's table entry where the check's ``base``
    tolerance gives parity's float32 ``defaults`` (no --atol / --rtol, no pattern matching the name), else base's."""
    if dtype is None:
        return base
    rtol, atol = TOLERANCES[dtype]

    def chosen(name: str) -> tuple[float, float]:
        got = base(name)
        return (atol, rtol) if tuple(got) == tuple(defaults) else got
    return chosen


def judge(row, actual, expected, valid, dtype: str, logits: bool) -> None:
    """Replace ``row``'s element-wise verdict with the statistical one (module docstring); ``row.gate`` keeps
    the statistics, the bound and the element-wise verdict."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    keep = np.ones(b.shape, bool) if valid is None else np.broadcast_to(valid, b.shape)
    fin = keep & np.isfinite(a) & np.isfinite(b)
    nonfinite = bool((keep & ~(np.isfinite(a) & np.isfinite(b))).any())
    diff, ref = np.abs(a - b)[fin], np.abs(b)[fin]
    gate = {"kind": "statistical", "dtype": dtype, "stat": "mean", "elementwise_passed": row.passed}
    if diff.size:
        gate.update(max=float(diff.max()), mean=float(diff.mean()), median=float(np.median(diff)),
                    quantile=float(np.quantile(diff, QUANTILE)), q=QUANTILE, mean_ref=float(ref.mean()),
                    bound=float(row.atol + row.rtol * ref.mean()))
    ok = bool(diff.size) and not nonfinite and gate["mean"] <= gate["bound"]
    if logits and diff.size:
        gate["top1_flips"] = _decided_flips(a, b, keep, row.atol, row.rtol)
        ok = ok and gate["top1_flips"] == 0
    row.gate, row.passed = gate, ok


def _decided_flips(a: np.ndarray, b: np.ndarray, keep: np.ndarray, atol: float, rtol: float) -> int:
    """Positions whose top-1 differs although the reference's margin over the candidate's pick is beyond
    that position's tolerance (atol + rtol * |top-1 score|)."""
    pos = keep[..., 0] if keep.ndim == b.ndim else keep
    a2, b2 = a[pos], b[pos]
    top_b, top_a = b2.argmax(-1), a2.argmax(-1)
    rows = np.arange(b2.shape[0])
    margin = b2[rows, top_b] - b2[rows, top_a]
    return int(((top_a != top_b) & (margin > atol + rtol * np.abs(b2[rows, top_b]))).sum())


def logprobs_close(ref_scores: np.ndarray, cand_scores: np.ndarray, ref_token: int, cand_token: int,
                   n: int = TOP_N) -> bool:
    """vLLM's check_logprobs_close at a row's first differing step: each side's token is among the other's
    top-``n`` scores there."""
    top_r = set(np.argsort(-np.asarray(ref_scores, np.float64))[:n].tolist())
    top_c = set(np.argsort(-np.asarray(cand_scores, np.float64))[:n].tolist())
    return int(cand_token) in top_r and int(ref_token) in top_c
