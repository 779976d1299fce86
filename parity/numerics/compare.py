"""Element-wise verdicts per output and per framework pair.

The rule is torch.testing's: ``|a - b| <= atol + rtol * |b|`` with the
reference as ``b``. Padded positions, and every output of a row that is all
padding, are excluded from the verdict; NaN and Inf fail explicitly and are
never zeroed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from parity.numerics import agreement
from parity.numerics import oracle as noise
from parity.contracts import outputs as outnames
from parity.contracts.results import OutputComparison, PairComparison
from parity.contracts import registry


# 2-D outputs with one value per token; every other 2-D output (pooled states,
# sequence logits) is per sequence, even when its width happens to equal the length.
TOKEN_LEVEL_2D = {"start_logits", "end_logits"}


def stack_of(name: str, seq2seq: bool = False) -> str:
    """Which padding mask an output follows: encoder, decoder, cross (decoder queries over
    encoder keys) or none (vision towers have no padding)."""
    base = outnames.base(name)
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


def rows_kept(attention_mask) -> np.ndarray | None:
    """Per batch row (the mask's leading axes: (batch,) or multiple choice's (batch, choices)), False
    where the encoder's or the decoder's mask is all zeros; None when every row has a real token.

    Such a row has nothing to compare: frameworks fill fully masked attention differently (-1e4,
    -1e9, finfo.min, -inf: transformers #14859), so its outputs are NaN in some and finite but
    different in others. It is excluded from every output's verdict (see valid_mask).
    """
    masks = attention_mask if isinstance(attention_mask, dict) else {"encoder": attention_mask}
    kept = None
    for m in (masks.get("encoder"), masks.get("decoder")):
        if m is None or np.ndim(m) < 2:
            continue
        rows = np.asarray(m).astype(bool).any(axis=-1)
        kept = rows if kept is None else (kept & rows if kept.shape == rows.shape else kept)
    return None if kept is None or kept.all() else kept


def empty_rows(attention_mask) -> list:
    """The rows rows_kept drops, for results.json (``inputs.empty_rows``): row indices, or
    [row, choice] pairs for multiple choice."""
    kept = rows_kept(attention_mask)
    if kept is None:
        return []
    found = np.argwhere(~kept)
    return [int(i[0]) for i in found] if kept.ndim == 1 else [[int(j) for j in i] for i in found]


def _drop_rows(valid, kept, shape: tuple):
    """``valid`` with the rows that ``kept`` drops excluded too, when ``shape`` starts with the batch
    (as the mask's leading axes, or flattened as the models flatten multiple choice)."""
    if kept is None:
        return valid
    if tuple(shape[:kept.ndim]) == kept.shape:
        rows = kept.reshape(kept.shape + (1,) * (len(shape) - kept.ndim))
    elif kept.ndim > 1 and len(shape) and shape[0] == kept.size:
        rows = kept.reshape((-1,) + (1,) * (len(shape) - 1))
    else:
        return valid
    rows = np.broadcast_to(rows, shape)
    return rows if valid is None else (np.asarray(valid) & rows)


def valid_mask(name: str, shape: tuple, attention_mask, seq2seq: bool = False) -> np.ndarray | None:
    """Boolean mask of the positions that count, broadcastable to ``shape``.

    ``attention_mask`` is the encoder's mask, or ``{"encoder": m, "decoder": m}``.
    Token-aligned outputs ``(batch, tokens, ...)`` drop padded tokens;
    attention maps ``(batch, heads, query, key)`` drop padded queries and keys
    (cross-attention: decoder queries, encoder keys); caches ``(batch, heads,
    tokens, dim)`` drop padded tokens. Outputs without a token axis (pooled,
    sequence logits) count everywhere, except in a row that is all padding
    (rows_kept): every output of the text stacks drops such rows. Vision
    outputs count everywhere (the image of a row is real).
    """
    if stack_of(name, seq2seq) == "none":
        return None
    return _drop_rows(_positions(name, shape, attention_mask, seq2seq), rows_kept(attention_mask), shape)


def _positions(name: str, shape: tuple, attention_mask, seq2seq: bool) -> np.ndarray | None:
    """valid_mask's padded positions, before whole empty rows are dropped."""
    masks = attention_mask if isinstance(attention_mask, dict) else {"encoder": attention_mask}
    stack = stack_of(name, seq2seq)
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
    if shape[1] == t and (len(shape) >= 3 or outnames.base(name) in TOKEN_LEVEL_2D):
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


@dataclass
class _RunningMetrics:
    """compare_array's metrics accumulated block by block: sums, maxima and counts, which combine
    exactly, so the blocks give the one-pass numbers."""

    atol: float
    rtol: float
    masked: bool             # padded positions are excluded: measure them apart
    axes: tuple | None       # token_axes: also keep the max abs diff per (batch row, token)
    total: int = 0
    bad_ref: int = 0
    bad_cand: int = 0
    n_bad: int = 0
    n_both: int = 0
    diff_sum: float = 0.0
    dot: float = 0.0
    sq_a: float = 0.0
    sq_b: float = 0.0
    best: float = -1.0
    best_flat: int = 0
    max_rel: float | None = None
    required: float | None = None
    first_bad: int | None = None
    pad_n: int = 0
    pad_both: int = 0
    pad_max: float | None = None
    tok_vals: list = field(default_factory=list)
    tok_counted: list = field(default_factory=list)
    tok_bad: list = field(default_factory=list)

    def add(self, a_block, b_block, keep, offset: int) -> None:
        """One block, upcast to float64 here so that its temporaries are freed on return."""
        a = a_block.astype(np.float64)
        b = b_block.astype(np.float64)
        fin_a, fin_b = np.isfinite(a), np.isfinite(b)
        bad_a = keep & ~fin_a
        bad_b = keep & ~fin_b
        both = keep & fin_a & fin_b
        self.total += int(keep.sum())
        self.bad_ref, self.bad_cand = self.bad_ref + int(bad_b.sum()), self.bad_cand + int(bad_a.sum())
        absb = np.abs(np.where(both, b, 0.0))
        diff = np.where(both, np.abs(a - b), 0.0)
        self.n_bad += int(((both & (diff > self.atol + self.rtol * absb)) | bad_a | bad_b).sum())
        local = int(np.argmax(diff)) if diff.size else 0
        if diff.size and diff.flat[local] > self.best:  # strict: the first occurrence wins, as one argmax would
            self.best, self.best_flat = float(diff.flat[local]), offset + local
        if both.any():
            self._add_finite(a, b, both, diff, absb)
        bad = bad_a | bad_b
        if self.first_bad is None and bad.any():
            self.first_bad = offset + int(np.argmax(bad))
        if self.masked:
            self._add_padded(a, b, ~keep & fin_a & fin_b, ~keep)
        if self.axes is not None:
            # Reuses diff (0 where padded or non-finite): heat-map data at no extra pass over the inputs.
            axes = self.axes
            self.tok_vals.append(diff.max(axis=axes) if axes else diff)
            self.tok_counted.append(keep.any(axis=axes) if axes else keep)
            self.tok_bad.append(bad.any(axis=axes) if axes else bad)

    def _add_finite(self, a, b, both, diff, absb) -> None:
        """Sums over the counted elements finite on both sides: mean, relative, cosine, required atol."""
        self.n_both += int(both.sum())
        self.diff_sum += float(diff.sum())
        nz = both & (absb > 0)
        if nz.any():
            self.max_rel = max(self.max_rel or 0.0, float((diff[nz] / absb[nz]).max()))
        elif self.max_rel is None:
            self.max_rel = 0.0
        va, vb = a[both], b[both]
        self.dot, self.sq_a, self.sq_b = (self.dot + float(np.dot(va, vb)), self.sq_a + float(np.dot(va, va)),
                                          self.sq_b + float(np.dot(vb, vb)))
        required = self.required if self.required is not None else -np.inf
        self.required = max(required, float((diff - self.rtol * absb)[both].max()))

    def _add_padded(self, a, b, finite_pad, padded) -> None:
        self.pad_n, self.pad_both = self.pad_n + int(padded.sum()), self.pad_both + int(finite_pad.sum())
        if finite_pad.any():
            self.pad_max = max(self.pad_max or 0.0, float(np.abs(a[finite_pad] - b[finite_pad]).max()))

    def fill(self, row: OutputComparison, shape: tuple) -> None:
        """Write the verdict and the metrics into ``row``."""
        row.total = self.total
        row.nonfinite = {"reference": self.bad_ref, "candidate": self.bad_cand}
        row.mismatched = self.n_bad
        row.mismatched_share = (self.n_bad / self.total) if self.total else 0.0
        any_bad = self.first_bad is not None
        if self.n_both:
            row.max_abs_diff = self.best
            row.worst_index = [int(i) for i in np.unravel_index(self.best_flat, shape)]
            row.mean_abs_diff = self.diff_sum / self.n_both
            row.max_rel_diff = self.max_rel
            na, nb = float(np.sqrt(self.sq_a)), float(np.sqrt(self.sq_b))
            row.cosine = 1.0 if na == 0 and nb == 0 else (float(self.dot / (na * nb)) if na and nb else 0.0)
            if not any_bad:
                # The smallest atol that passes at this rtol (None when NaN/Inf decide).
                row.required_atol = float(max(self.required, 0.0))
        elif self.total and not any_bad:
            row.required_atol = 0.0
        if self.total == 0:
            row.required_atol = 0.0
        if any_bad:
            row.worst_index = [int(i) for i in np.unravel_index(self.first_bad, shape)]
        row.passed = self.n_bad == 0
        if self.masked:
            # Error on the excluded (padded) positions, reported apart from the verdict:
            # a large error here and none elsewhere is a padding artefact, not a bug.
            row.padded = {"positions": self.pad_n, "max_abs_diff": self.pad_max if self.pad_both else None,
                          "nonfinite": self.pad_n - self.pad_both}
        if self.axes is not None:
            row.per_token = self.per_token()

    def per_token(self) -> dict:
        """Max abs diff per (batch row, token), 3 significant digits, None where nothing counted."""
        join = lambda parts: np.concatenate(parts) if len(parts) > 1 else parts[0]  # noqa: E731
        per_tok, counted, bad_tok = join(self.tok_vals), join(self.tok_counted), join(self.tok_bad)
        return {
            "values": [[_sig(v) if c else None for v, c in zip(rv, rc)] for rv, rc in zip(per_tok, counted)],
            "nonfinite": [[int(i), int(j)] for i, j in zip(*np.nonzero(bad_tok))],
        }


def compare_array(name: str, actual, expected, *, atol: float, rtol: float,
                  valid: np.ndarray | None = None, tokens: tuple | None = None) -> OutputComparison:
    """Compare one candidate tensor with its reference; return its row of results.json.

    The work is done in float64 block by block along the first axis (the metrics
    are sums, maxima and counts, so they combine exactly), which keeps time and
    memory linear in the tensor's size. With ``tokens=(batch, length)`` a
    token-aligned output also gets ``per_token`` (max abs diff per batch row and
    token, None where padded; not written to results.json) that compare_pair
    keeps for the worst output only.
    """
    a_all = np.asarray(actual)
    b_all = np.asarray(expected)
    row = OutputComparison(
        name=name, shape=list(b_all.shape), passed=False, atol=float(atol), rtol=float(rtol),
        max_abs_diff=None, max_rel_diff=None, mean_abs_diff=None, cosine=None, mismatched=0, total=0,
        mismatched_share=0.0, worst_index=None, required_atol=None,
        nonfinite={"reference": 0, "candidate": 0}, masked=valid is not None, error=None)
    if a_all.shape != b_all.shape:
        row.error = f"shape mismatch: candidate {list(a_all.shape)} vs reference {list(b_all.shape)}"
        row.candidate_shape = list(a_all.shape)
        return row
    shape = b_all.shape
    keep_all = np.ones(shape, bool) if valid is None else np.broadcast_to(valid, shape)
    running = _RunningMetrics(atol=atol, rtol=rtol, masked=valid is not None, axes=token_axes(name, shape, tokens))
    for index, offset in _blocks(shape):
        running.add(a_all[index], b_all[index], keep_all[index], offset)
    running.fill(row, shape)
    return row


def _agreement(row: OutputComparison, a, b, mask, top1_min: float | None) -> None:
    """Top-1 agreement and mean KL into ``row``; under the top-1 gate its verdict is the rate's."""
    row.top1_agreement, row.mean_kl = agreement.metrics(a, b, mask)
    if top1_min is not None:
        row.gate = {"kind": "top1", "min": top1_min, "elementwise_passed": row.passed}
        row.passed = row.top1_agreement is not None and row.top1_agreement >= top1_min


def compare_pair(reference: str, candidate: str, ref_outputs: Mapping, cand_outputs: Mapping,
                 names: Iterable[str], *, tolerance, attention_mask=None,
                 exclude_padding: bool = True, seq2seq: bool = False, top1_min: float | None = None,
                 precision: str | None = None, oracle: Mapping | None = None,
                 oracle_gate: bool = False, not_produced: Mapping | None = None) -> PairComparison:
    """Compare every named output of one pair, streaming one tensor at a time.

    ``tolerance(name) -> (atol, rtol)``. Outputs present on one side only are
    reported as failures (a missing tensor is never a silent pass), except a
    cache that one framework does not return from a plain forward pass (Flax
    returns ``past_key_values`` only when given an initialised cache): those
    are listed in ``not_compared`` with the reason. Logits outputs also get
    top-1 agreement and mean KL (parity.numerics.agreement); with ``top1_min`` (the
    top-1 gate) they pass on that rate instead of the element-wise rule. ``precision`` (bfloat16 / float16:
    a side asked for reduced precision) judges every output by the statistical gate (parity.numerics.precision).
    With ``oracle`` (float64 outputs of the same model) every output also gets both sides' RMSE to it
    (parity.numerics.oracle); with ``oracle_gate`` (``--gate oracle``) that rule decides where the
    element-wise one fails. ``not_produced`` ({side: {output group: why}}) names groups a side's loading
    does not produce (attention maps under SDPA): listed under ``not_compared``, never a failure.
    """
    rows, skipped = [], []
    kept = rows_kept(attention_mask) if exclude_padding else None
    # Every row all padding: nothing would be counted, and a pass over nothing is no verdict.
    nothing = kept is not None and not kept.any()
    enc_mask = attention_mask.get("encoder") if isinstance(attention_mask, dict) else attention_mask
    tokens = tuple(np.shape(enc_mask)) if enc_mask is not None and np.ndim(enc_mask) == 2 else None
    worst = None  # (score, row, per-token values) of the worst token-aligned output
    for name in names:
        atol, rtol = tolerance(name)
        row = _unpaired(name, reference, candidate, ref_outputs, cand_outputs, atol, rtol, skipped, not_produced)
        both = name in ref_outputs and name in cand_outputs
        if row is None and both and nothing and stack_of(name, seq2seq) != "none":
            row = OutputComparison(name=name, shape=list(np.shape(ref_outputs[name])), passed=False, atol=atol,
                                   rtol=rtol, error="nothing to compare: every batch row is all padding "
                                   "(attention_mask all zeros)")
        if row is None and both:
            row, per_tok = _paired(name, ref_outputs[name], cand_outputs[name], atol, rtol, attention_mask,
                                   exclude_padding, seq2seq, tokens, top1_min, precision)
            _oracle(row, ref_outputs[name], cand_outputs[name], oracle, oracle_gate, attention_mask,
                    exclude_padding, seq2seq)
            if per_tok is not None:
                # NaN/Inf outrank any finite difference.
                score = float("inf") if per_tok["nonfinite"] else (row.max_abs_diff or 0.0)
                if worst is None or score > worst[0]:
                    worst = (score, row, per_tok)
        if row is not None:
            rows.append(row)
    first = next((r.name for r in rows if not r.passed), None)
    token_error = None
    if worst is not None:
        token_error = {"output": worst[1].name, "max_abs_diff": worst[1].max_abs_diff,
                       "reduction": "max abs diff over every other axis", **worst[2]}
    return PairComparison(reference=reference, candidate=candidate, passed=first is None, first_divergence=first,
                          outputs=rows, token_error=token_error, not_compared=skipped)


def _unpaired(name: str, reference: str, candidate: str, ref_outputs: Mapping, cand_outputs: Mapping, atol: float,
              rtol: float, skipped: list, not_produced: Mapping | None = None) -> OutputComparison | None:
    """An output on one side only: skipped with its reason (appended to ``skipped``) where the framework says it
    does not produce it (None returned), else a failing row; None too when both sides have it."""
    missing_in = [fw for fw, outs in ((reference, ref_outputs), (candidate, cand_outputs)) if name not in outs]
    if not missing_in:
        return None
    if outnames.group(name) == "cache" and len(missing_in) == 1:
        skipped.append({"name": name, "missing_in": missing_in[0],
                        "reason": f"{missing_in[0]} returns no cache from a plain forward pass"})
        return None
    lacks = len(missing_in) == 1 and (((not_produced or {}).get(missing_in[0]) or {}).get(outnames.group(name))
                                      or registry.not_produced(missing_in[0], outnames.group(name)))
    if lacks:  # declared by the framework (KerasHub returns no attention maps): not available, not a failure
        skipped.append({"name": name, "missing_in": missing_in[0], "reason": lacks})
        return None
    side = reference if name not in ref_outputs else candidate
    return OutputComparison(name=name, shape=None, passed=False, atol=atol, rtol=rtol,
                            error=f"output missing from {side}")


def _oracle(row: OutputComparison, ref, cand, oracle: Mapping | None, gate: bool, attention_mask,
            exclude_padding: bool, seq2seq: bool) -> None:
    """Both sides' distance to the float64 run into ``row.oracle``, then the oracle gate's verdict."""
    truth = None if oracle is None or row.error is not None else oracle.get(row.name)
    if truth is not None and np.shape(truth) == np.shape(ref) and np.issubdtype(np.asarray(truth).dtype, np.floating):
        valid = valid_mask(row.name, np.shape(ref), attention_mask, seq2seq) if exclude_padding else None
        row.oracle = noise.judge(ref, cand, truth, valid, row.atol)
    noise.apply_gate(row, gate and row.error is None)


def _paired(name: str, b, a, atol: float, rtol: float, attention_mask, exclude_padding: bool, seq2seq: bool,
            tokens, top1_min, precision=None) -> tuple[OutputComparison, dict | None]:
    """One output present on both sides (``b`` the reference's): its row and its per-token values."""
    mask = valid_mask(name, np.shape(b), attention_mask, seq2seq) if exclude_padding else None
    # The heat map is over the encoder's (batch, token) grid: only outputs on that grid feed it.
    on_grid = tokens if stack_of(name, seq2seq) == "encoder" and outnames.group(name) != "cache" else None
    row = compare_array(name, a, b, atol=atol, rtol=rtol, valid=mask, tokens=on_grid)
    if row.error is None and agreement.applies(name, np.shape(b)):
        _agreement(row, a, b, mask, top1_min)
    if row.error is None and precision is not None:
        from parity.numerics.precision import judge

        judge(row, a, b, mask, precision, agreement.applies(name, np.shape(b)))
    per_tok, row.per_token = row.per_token, None
    return row, per_tok
