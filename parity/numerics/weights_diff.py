"""Two weight exports compared tensor by tensor (names and layouts: parity.worker.weights)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

# Show at most this many names per list in results (counts are always complete).
LIST_LIMIT = 50


@dataclass
class WeightsComparison:
    """How one export (candidate) differs from another (reference), tensor by tensor."""

    passed: bool
    atol: float
    reference_count: int
    candidate_count: int
    identical: int = 0            # same shape and every element equal
    within_tolerance: int = 0     # not identical but max abs diff <= atol
    missing: list = field(default_factory=list)      # in reference, not in candidate
    unexpected: list = field(default_factory=list)   # in candidate, not in reference
    shape_mismatch: list = field(default_factory=list)  # {"name", "reference", "candidate"}
    differing: list = field(default_factory=list)    # {"name", "shape", "max_abs_diff", "mismatched", "total"}
    max_abs_diff: float = 0.0     # over every tensor present on both sides with equal shapes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = {k: len(getattr(self, k)) for k in ("missing", "unexpected", "shape_mismatch", "differing")}
        for k in ("missing", "unexpected", "shape_mismatch", "differing"):
            d[k] = d[k][:LIST_LIMIT]
        return d


def diff_weights(reference: dict, candidate: dict, *, atol: float = 0.0) -> WeightsComparison:
    """Compare two exports by name. A conversion copies numbers, so the default is exact (atol 0).

    Fails on any missing, unexpected, reshaped or differing tensor; NaN on one
    side only is a difference, NaN in the same place on both is not.
    """
    out = WeightsComparison(passed=False, atol=float(atol), reference_count=len(reference),
                            candidate_count=len(candidate))
    out.missing = sorted(set(reference) - set(candidate))
    out.unexpected = sorted(set(candidate) - set(reference))
    for name in sorted(set(reference) & set(candidate)):
        a = np.asarray(reference[name])
        b = np.asarray(candidate[name])
        if a.shape != b.shape:
            out.shape_mismatch.append({"name": name, "reference": list(a.shape), "candidate": list(b.shape)})
            continue
        if a.dtype.kind not in "fc" or b.dtype.kind not in "fc":
            equal = a == b
            diff = np.where(equal, 0.0, np.inf) if a.size else np.zeros(0)
        else:
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            both_nan = np.isnan(a64) & np.isnan(b64)
            diff = np.where(both_nan, 0.0, np.abs(a64 - b64))
            diff = np.where(np.isnan(diff), np.inf, diff)
        worst = float(diff.max()) if diff.size else 0.0
        if np.isfinite(worst):
            out.max_abs_diff = max(out.max_abs_diff, worst)
        else:
            out.max_abs_diff = float("inf")
        if worst == 0.0:
            out.identical += 1
        elif worst <= atol:
            out.within_tolerance += 1
        else:
            out.differing.append({"name": name, "shape": list(a.shape),
                                  "max_abs_diff": worst if np.isfinite(worst) else None,  # None: NaN/Inf
                                  "mismatched": int((diff > atol).sum()), "total": int(diff.size)})
    out.differing.sort(key=lambda d: -(d["max_abs_diff"] if d["max_abs_diff"] is not None else np.inf))
    out.passed = not (out.missing or out.unexpected or out.shape_mismatch or out.differing)
    if not np.isfinite(out.max_abs_diff):
        out.max_abs_diff = None  # JSON has no Inf; `differing` names the tensor
    return out
