"""Element-wise verdicts per output and per framework pair.

The rule is torch.testing's: ``|a - b| <= atol + rtol * |b|`` with the
reference as ``b``. Padded positions are excluded from the verdict; NaN and
Inf fail explicitly and are never zeroed.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from . import outputs as outnames


# 2-D outputs with one value per token; every other 2-D output (pooled states,
# sequence logits) is per sequence, even when its width happens to equal the length.
TOKEN_LEVEL_2D = {"start_logits", "end_logits"}


def stack_of(name: str, seq2seq: bool = False) -> str:
    """Which padding mask an output follows: encoder, decoder, cross (decoder queries over
    encoder keys) or none (vision towers have no padding)."""
    base = name.split(".", 1)[0]
    if "vision" in base or base.startswith("image_"):
        return "none"
    if base == "past_key_values":
        kind = name.rsplit(".", 1)[-1]
        if kind.startswith("cross_"):
            return "encoder"
        return "decoder" if seq2seq else "encoder"
    if base == "cross_attentions":
        return "cross"
    if base.startswith("text_") or base.startswith("encoder_") or not seq2seq:
        return "encoder"
    return "decoder"


def _as_rows(mask):
    """2-D (rows, tokens) bool mask; multiple choice's (batch, choices, tokens) is flattened
    as the models flatten their inputs."""
    if mask is None:
        return None
    m = np.asarray(mask).astype(bool)
    if m.ndim == 3:
        m = m.reshape(-1, m.shape[-1])
    return m if m.ndim == 2 else None


def valid_mask(name: str, shape: tuple, attention_mask, seq2seq: bool = False) -> np.ndarray | None:
    """Boolean mask of the positions that count, broadcastable to ``shape``.

    ``attention_mask`` is the encoder's mask, or ``{"encoder": m, "decoder": m}``.
    Token-aligned outputs ``(batch, tokens, ...)`` drop padded tokens;
    attention maps ``(batch, heads, query, key)`` drop padded queries and keys
    (cross-attention: decoder queries, encoder keys); caches ``(batch, heads,
    tokens, dim)`` drop padded tokens. Outputs without a token axis (pooled,
    sequence logits) and vision outputs count everywhere.
    """
    masks = attention_mask if isinstance(attention_mask, dict) else {"encoder": attention_mask}
    stack = stack_of(name, seq2seq)
    if stack == "none":
        return None
    enc, dec = _as_rows(masks.get("encoder")), _as_rows(masks.get("decoder"))
    if stack == "cross":
        q, k = dec, enc
    else:
        q = k = enc if stack == "encoder" else dec
    if q is None and k is None:
        return None
    if outnames.group(name) == "attentions" and len(shape) == 4:
        b, tq, tk = shape[0], shape[2], shape[3]
        if (q is not None and q.shape != (b, tq)) or (k is not None and k.shape != (b, tk)):
            return None  # the map does not line up with the mask: compare everything
        qm = np.ones((b, tq), bool) if q is None else q
        km = np.ones((b, tk), bool) if k is None else k
        return np.broadcast_to(qm[:, None, :, None] & km[:, None, None, :], shape)
    m = q
    if m is None:
        return None
    b, t = m.shape
    if outnames.group(name) == "cache":
        if len(shape) == 4 and shape[0] == b and shape[2] == t:
            return np.broadcast_to(m[:, None, :, None], shape)
        return None
    token_aligned = len(shape) >= 3 or name.split(".")[-1] in TOKEN_LEVEL_2D or name in TOKEN_LEVEL_2D
    if token_aligned and len(shape) >= 2 and shape[0] == b and shape[1] == t:
        return np.broadcast_to(m.reshape((b, t) + (1,) * (len(shape) - 2)), shape)
    return None


def token_axes(name: str, shape: tuple, tokens: tuple | None) -> tuple | None:
    """Axes to reduce to one value per (batch row, token), or None when the output has no token axis.

    Token-aligned outputs keep axes 0 and 1; attention maps ``(batch, heads, query, key)``
    keep batch and query.
    """
    if tokens is None or len(shape) < 2 or tuple(shape[:1]) != tokens[:1]:
        return None
    b, t = tokens
    if outnames.group(name) == "attentions":
        return (1, 3) if len(shape) == 4 and shape[2] == t and shape[3] == t else None
    if shape[1] == t and (len(shape) >= 3 or name.split(".")[0] in TOKEN_LEVEL_2D):
        return tuple(range(2, len(shape)))
    return None


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def compare_array(name: str, actual, expected, *, atol: float, rtol: float,
                  valid: np.ndarray | None = None, tokens: tuple | None = None) -> dict:
    """Compare one candidate tensor with its reference; return the metrics dict.

    With ``tokens=(batch, length)`` a token-aligned output also gets a private
    ``_per_token`` entry (max abs diff per batch row and token, None where
    padded) that compare_pair keeps for the worst output only.
    """
    a = np.asarray(actual)
    b = np.asarray(expected)
    result = {
        "name": name, "shape": list(b.shape), "passed": False,
        "atol": float(atol), "rtol": float(rtol),
        "max_abs_diff": None, "max_rel_diff": None, "mean_abs_diff": None,
        "cosine": None, "mismatched": 0, "total": 0, "mismatched_share": 0.0,
        "worst_index": None, "required_atol": None,
        "nonfinite": {"reference": 0, "candidate": 0}, "masked": valid is not None,
        "error": None,
    }
    if a.shape != b.shape:
        result["error"] = f"shape mismatch: candidate {list(a.shape)} vs reference {list(b.shape)}"
        result["candidate_shape"] = list(a.shape)
        return result
    a = a.astype(np.float64, copy=False)
    b = b.astype(np.float64, copy=False)
    keep = np.ones(b.shape, bool) if valid is None else np.broadcast_to(valid, b.shape)
    total = int(keep.sum())
    result["total"] = total

    fin_a, fin_b = np.isfinite(a), np.isfinite(b)
    bad_a = keep & ~fin_a
    bad_b = keep & ~fin_b
    result["nonfinite"] = {"reference": int(bad_b.sum()), "candidate": int(bad_a.sum())}
    both = keep & fin_a & fin_b

    diff = np.where(both, np.abs(a - b), 0.0)
    allowed = atol + rtol * np.abs(np.where(both, b, 0.0))
    mismatch = (both & (diff > allowed)) | bad_a | bad_b
    n_bad = int(mismatch.sum())
    result["mismatched"] = n_bad
    result["mismatched_share"] = (n_bad / total) if total else 0.0

    if both.any():
        flat = int(np.argmax(diff))
        result["max_abs_diff"] = float(diff.flat[flat])
        result["worst_index"] = [int(i) for i in np.unravel_index(flat, b.shape)]
        result["mean_abs_diff"] = float(diff.sum() / both.sum())
        absb = np.abs(b)
        nz = both & (absb > 0)
        result["max_rel_diff"] = float((diff[nz] / absb[nz]).max()) if nz.any() else 0.0
        va, vb = a[both], b[both]
        na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
        result["cosine"] = 1.0 if na == 0 and nb == 0 else (
            float(np.dot(va, vb) / (na * nb)) if na and nb else 0.0)
        if not (bad_a.any() or bad_b.any()):
            # The smallest atol that passes at this rtol (None when NaN/Inf decide).
            result["required_atol"] = float(max((diff - rtol * absb)[both].max(), 0.0))
    elif total and not (bad_a.any() or bad_b.any()):
        result["required_atol"] = 0.0
    if total == 0:
        result["required_atol"] = 0.0
    if bad_a.any() or bad_b.any():
        flat = int(np.argmax(bad_a | bad_b))
        result["worst_index"] = [int(i) for i in np.unravel_index(flat, b.shape)]
    result["passed"] = n_bad == 0
    if valid is not None:
        result["padded"] = _padded_stats(a, b, ~keep)
    axes = token_axes(name, b.shape, tokens)
    if axes is not None:
        # Reuses diff (0 where padded or non-finite): heat-map data at no extra pass over the inputs.
        per_tok = diff.max(axis=axes) if axes else diff
        counted = keep.any(axis=axes) if axes else keep
        bad_tok = (bad_a | bad_b).any(axis=axes) if axes else (bad_a | bad_b)
        result["_per_token"] = {
            "values": [[_sig(v) if c else None for v, c in zip(rv, rc)] for rv, rc in zip(per_tok, counted)],
            "nonfinite": [[int(i), int(j)] for i, j in zip(*np.nonzero(bad_tok))],
        }
    return result


def _padded_stats(a: np.ndarray, b: np.ndarray, padded: np.ndarray) -> dict:
    """Error on the excluded (padded) positions, reported apart from the verdict.

    A large error here and none elsewhere is a padding artefact, not a bug.
    """
    n = int(padded.sum())
    if not n:
        return {"positions": 0, "max_abs_diff": None, "nonfinite": 0}
    both = padded & np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a[both] - b[both])
    return {"positions": n, "max_abs_diff": float(diff.max()) if diff.size else None,
            "nonfinite": int(n - both.sum())}


def compare_pair(reference: str, candidate: str, ref_outputs: Mapping, cand_outputs: Mapping,
                 names: Iterable[str], *, tolerance, attention_mask=None,
                 exclude_padding: bool = True, seq2seq: bool = False) -> dict:
    """Compare every named output of one pair, streaming one tensor at a time.

    ``tolerance(name) -> (atol, rtol)``. Outputs present on one side only are
    reported as failures (a missing tensor is never a silent pass), except a
    cache that one framework does not return from a plain forward pass (Flax
    returns ``past_key_values`` only when given an initialised cache): those
    are listed in ``not_compared`` with the reason.
    """
    rows, skipped = [], []
    enc_mask = attention_mask.get("encoder") if isinstance(attention_mask, dict) else attention_mask
    tokens = tuple(np.shape(enc_mask)) if enc_mask is not None and np.ndim(enc_mask) == 2 else None
    worst = None  # (score, row, per-token values) of the worst token-aligned output
    for name in names:
        atol, rtol = tolerance(name)
        missing_in = [fw for fw, outs in ((reference, ref_outputs), (candidate, cand_outputs)) if name not in outs]
        if missing_in and outnames.group(name) == "cache" and len(missing_in) == 1:
            skipped.append({"name": name, "missing_in": missing_in[0],
                            "reason": f"{missing_in[0]} returns no cache from a plain forward pass"})
            continue
        if name not in ref_outputs or name not in cand_outputs:
            side = reference if name not in ref_outputs else candidate
            rows.append({"name": name, "shape": None, "passed": False, "atol": atol, "rtol": rtol,
                         "error": f"output missing from {side}"})
            continue
        b = ref_outputs[name]
        a = cand_outputs[name]
        mask = valid_mask(name, np.shape(b), attention_mask, seq2seq) if exclude_padding else None
        # The heat map is over the encoder's (batch, token) grid: only outputs on that grid feed it.
        on_grid = tokens if stack_of(name, seq2seq) == "encoder" and outnames.group(name) != "cache" else None
        row = compare_array(name, a, b, atol=atol, rtol=rtol, valid=mask, tokens=on_grid)
        per_tok = row.pop("_per_token", None)
        if per_tok is not None:
            # NaN/Inf outrank any finite difference.
            score = float("inf") if per_tok["nonfinite"] else (row["max_abs_diff"] or 0.0)
            if worst is None or score > worst[0]:
                worst = (score, row, per_tok)
        rows.append(row)
        del a, b
    first = next((r["name"] for r in rows if not r["passed"]), None)
    token_error = None
    if worst is not None:
        token_error = {"output": worst[1]["name"], "max_abs_diff": worst[1]["max_abs_diff"],
                       "reduction": "max abs diff over every other axis", **worst[2]}
    return {"reference": reference, "candidate": candidate, "passed": first is None,
            "first_divergence": first, "outputs": rows, "token_error": token_error, "not_compared": skipped}
