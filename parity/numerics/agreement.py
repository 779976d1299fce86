"""Logit agreement beside the element-wise metrics: top-1 agreement rate and mean KL divergence.

What conversion checks of real checkpoints report (MaxText, MLX): do both
frameworks pick the same class / next token at every counted position, and how
far apart are the two distributions (KL(reference || candidate) of the softmax
over the last axis, in nats). With ``gate = "top1"`` a logits output passes on
its top-1 agreement rate instead of the element-wise rule, for checks where
element-wise tolerance is the wrong question (a quantised or bf16 candidate).
"""

from __future__ import annotations

import numpy as np

from parity.contracts import outputs as outnames
from parity.contracts.errors import UsageError

GATES = ("elementwise", "top1", "oracle")  # oracle: parity.numerics.oracle
DEFAULT_TOP1_MIN = 0.99
# Logits whose last axis is a token axis, not classes: agreement over it would mix padded positions in.
_NOT_CLASSES = {"start_logits", "end_logits"}


def gate_threshold(gate: str, top1_min) -> float | None:
    """The top-1 threshold of a gate (None for the element-wise one); UsageError for bad values."""
    if gate not in GATES:
        raise UsageError(f"unknown gate {gate!r}", "--gate takes elementwise, top1 or oracle")
    if gate in ("elementwise", "oracle"):
        if top1_min is not None:
            raise UsageError(f"--top1-min applies only with --gate top1, not {gate}", "pass --gate top1 --top1-min 0.99, or "
                             "leave out --top1-min")
        return None
    if top1_min is None:
        return DEFAULT_TOP1_MIN
    try:
        value = float(top1_min)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value <= 1:
        raise UsageError(f"--top1-min must be a rate between 0 and 1, got {top1_min!r}",
                         "pass e.g. --top1-min 0.99 (99% of positions pick the same top-1)")
    return value


def applies(name: str, shape) -> bool:
    """Logits-like outputs with a class / vocabulary last axis."""
    base = outnames.base(name)
    return base.endswith("logits") and base not in _NOT_CLASSES and len(shape) >= 2 and shape[-1] > 1


def metrics(actual, expected, valid=None) -> tuple[float | None, float | None]:
    """(top-1 agreement rate, mean KL(reference || candidate)) over the counted positions (``valid``: the
    compare mask, broadcastable to the output; its last axis is taken as one position). Row by row along the
    first axis, in float64; (None, None) when nothing is counted or a value is not finite."""
    a_all, b_all = np.asarray(actual), np.asarray(expected)
    keep_all = None if valid is None else np.broadcast_to(valid, b_all.shape)[..., 0]
    agree = kl = n = 0
    for i in range(b_all.shape[0]):
        a, b = a_all[i].astype(np.float64), b_all[i].astype(np.float64)
        keep = np.ones(b.shape[:-1], bool) if keep_all is None else np.asarray(keep_all[i], bool)
        a, b = a[keep], b[keep]
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            return None, None
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        la = a - a.max(-1, keepdims=True)
        la -= np.log(np.exp(la).sum(-1, keepdims=True))
        lb = b - b.max(-1, keepdims=True)
        lb -= np.log(np.exp(lb).sum(-1, keepdims=True))
        kl += float((np.exp(lb) * (lb - la)).sum())
        n += a.shape[0]
    if n == 0:
        return None, None
    return agree / n, max(kl / n, 0.0)
