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


# Elements per block: float64 temporaries of a few tens of MB, whatever the tensor's size.
CHUNK_ELEMENTS = 1 << 22


def _blocks(shape: tuple):
    """(index, flat offset) blocks along axis 0, so that a GB-sized attention stack is never upcast whole."""
    if len(shape) == 0 or shape[0] <= 1:
        yield Ellipsis, 0
        return
    row = int(np.prod(shape[1:], dtype=np.int64)) or 1
    step = max(1, CHUNK_ELEMENTS // row)
    for start in range(0, shape[0], step):
        yield slice(start, start + step), start * row


def compare_array(name: str, actual, expected, *, atol: float, rtol: float,
                  valid: np.ndarray | None = None, tokens: tuple | None = None) -> dict:
    """Compare one candidate tensor with its reference; return the metrics dict.

    The work is done in float64 block by block along the first axis (the metrics
    are sums, maxima and counts, so they combine exactly), which keeps time and
    memory linear in the tensor's size. With ``tokens=(batch, length)`` a
    token-aligned output also gets a private ``_per_token`` entry (max abs diff
    per batch row and token, None where padded) that compare_pair keeps for the
    worst output only.
    """
    a_all = np.asarray(actual)
    b_all = np.asarray(expected)
    result = {
        "name": name, "shape": list(b_all.shape), "passed": False,
        "atol": float(atol), "rtol": float(rtol),
        "max_abs_diff": None, "max_rel_diff": None, "mean_abs_diff": None,
        "cosine": None, "mismatched": 0, "total": 0, "mismatched_share": 0.0,
        "worst_index": None, "required_atol": None,
        "nonfinite": {"reference": 0, "candidate": 0}, "masked": valid is not None,
        "error": None,
    }
    if a_all.shape != b_all.shape:
        result["error"] = f"shape mismatch: candidate {list(a_all.shape)} vs reference {list(b_all.shape)}"
        result["candidate_shape"] = list(a_all.shape)
        return result
    shape = b_all.shape
    keep_all = np.ones(shape, bool) if valid is None else np.broadcast_to(valid, shape)
    axes = token_axes(name, shape, tokens)
    total = bad_ref = bad_cand = n_bad = n_both = 0
    diff_sum = dot = sq_a = sq_b = 0.0
    best, best_flat, max_rel, required, first_bad = -1.0, 0, None, None, None
    pad_n = pad_both = 0
    pad_max = None
    tok_vals, tok_counted, tok_bad = [], [], []
    for index, offset in _blocks(shape):
        a = a_all[index].astype(np.float64)
        b = b_all[index].astype(np.float64)
        keep = keep_all[index]
        fin_a, fin_b = np.isfinite(a), np.isfinite(b)
        bad_a = keep & ~fin_a
        bad_b = keep & ~fin_b
        both = keep & fin_a & fin_b
        total += int(keep.sum())
        bad_ref, bad_cand = bad_ref + int(bad_b.sum()), bad_cand + int(bad_a.sum())
        absb = np.abs(np.where(both, b, 0.0))
        diff = np.where(both, np.abs(a - b), 0.0)
        n_bad += int(((both & (diff > atol + rtol * absb)) | bad_a | bad_b).sum())
        local = int(np.argmax(diff)) if diff.size else 0
        if diff.size and diff.flat[local] > best:  # strict: the first occurrence wins, as one argmax would
            best, best_flat = float(diff.flat[local]), offset + local
        if both.any():
            n_both += int(both.sum())
            diff_sum += float(diff.sum())
            nz = both & (absb > 0)
            if nz.any():
                max_rel = max(max_rel or 0.0, float((diff[nz] / absb[nz]).max()))
            elif max_rel is None:
                max_rel = 0.0
            va, vb = a[both], b[both]
            dot, sq_a, sq_b = dot + float(np.dot(va, vb)), sq_a + float(np.dot(va, va)), sq_b + float(np.dot(vb, vb))
            required = max(required if required is not None else -np.inf, float((diff - rtol * absb)[both].max()))
        bad = bad_a | bad_b
        if first_bad is None and bad.any():
            first_bad = offset + int(np.argmax(bad))
        if valid is not None:
            padded = ~keep
            finite_pad = padded & fin_a & fin_b
            pad_n, pad_both = pad_n + int(padded.sum()), pad_both + int(finite_pad.sum())
            if finite_pad.any():
                pad_max = max(pad_max or 0.0, float(np.abs(a[finite_pad] - b[finite_pad]).max()))
        if axes is not None:
            # Reuses diff (0 where padded or non-finite): heat-map data at no extra pass over the inputs.
            tok_vals.append(diff.max(axis=axes) if axes else diff)
            tok_counted.append(keep.any(axis=axes) if axes else keep)
            tok_bad.append(bad.any(axis=axes) if axes else bad)
        del a, b, diff, absb, fin_a, fin_b, both, bad_a, bad_b

    result["total"] = total
    result["nonfinite"] = {"reference": bad_ref, "candidate": bad_cand}
    result["mismatched"] = n_bad
    result["mismatched_share"] = (n_bad / total) if total else 0.0
    any_bad = first_bad is not None
    if n_both:
        result["max_abs_diff"] = best
        result["worst_index"] = [int(i) for i in np.unravel_index(best_flat, shape)]
        result["mean_abs_diff"] = diff_sum / n_both
        result["max_rel_diff"] = max_rel
        na, nb = float(np.sqrt(sq_a)), float(np.sqrt(sq_b))
        result["cosine"] = 1.0 if na == 0 and nb == 0 else (float(dot / (na * nb)) if na and nb else 0.0)
        if not any_bad:
            # The smallest atol that passes at this rtol (None when NaN/Inf decide).
            result["required_atol"] = float(max(required, 0.0))
    elif total and not any_bad:
        result["required_atol"] = 0.0
    if total == 0:
        result["required_atol"] = 0.0
    if any_bad:
        result["worst_index"] = [int(i) for i in np.unravel_index(first_bad, shape)]
    result["passed"] = n_bad == 0
    if valid is not None:
        # Error on the excluded (padded) positions, reported apart from the verdict:
        # a large error here and none elsewhere is a padding artefact, not a bug.
        result["padded"] = {"positions": pad_n, "max_abs_diff": pad_max if pad_both else None,
                            "nonfinite": pad_n - pad_both}
    if axes is not None:
        per_tok = np.concatenate(tok_vals) if len(tok_vals) > 1 else tok_vals[0]
        counted = np.concatenate(tok_counted) if len(tok_counted) > 1 else tok_counted[0]
        bad_tok = np.concatenate(tok_bad) if len(tok_bad) > 1 else tok_bad[0]
        result["_per_token"] = {
            "values": [[_sig(v) if c else None for v, c in zip(rv, rc)] for rv, rc in zip(per_tok, counted)],
            "nonfinite": [[int(i), int(j)] for i, j in zip(*np.nonzero(bad_tok))],
        }
    return result


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
