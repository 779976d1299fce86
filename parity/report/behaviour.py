"""The behaviour sections every report shows (``--generate``, ``--pipeline``, logit agreement), as plain
lines from a results dict; console prints them, Markdown, HTML and JUnit wrap them."""

from __future__ import annotations

from parity.numerics.format import SHORT, num
from parity.numerics.oracle import within_noise


def agreement(row: dict) -> str | None:
    """``top-1 99.5%, KL 1.2e-09`` for a logits output (None for others), with the gate when it decided."""
    if "top1_agreement" not in row:
        return None
    top1 = "-" if row.get("top1_agreement") is None else f"{100 * row['top1_agreement']:.1f}%"
    text = f"top-1 {top1}, mean KL {num(row.get('mean_kl'), SHORT)}"
    gate = row.get("gate")
    if gate and gate.get("kind", "top1") == "top1":
        text += (f" (gate top1 >= {gate['min']:g}: {'PASS' if row['passed'] else 'FAIL'}; element-wise "
                 f"{'PASS' if gate['elementwise_passed'] else 'FAIL'})")
    return text


def agreement_shown(row: dict, verbose: bool = False) -> str | None:
    """The agreement text where it says something beyond the table: a top-1 differs or the gate decided (every
    logits row with ``verbose``); results.json always has the numbers."""
    text = agreement(row)
    top1_gate = (row.get("gate") or {}).get("kind", "top1") == "top1" and row.get("gate")
    return text if text and (verbose or top1_gate or row.get("top1_agreement") != 1.0) else None


def oracle(row: dict) -> str | None:
    """``RMSE to float64: candidate 1.9e-06 <= 2 x reference 1.5e-06 + 1e-06 (float32 noise)`` where a float64
    run judged the output (None elsewhere), with the gate's verdict when it decided."""
    o, gate = row.get("oracle"), row.get("gate") or {}
    if gate.get("kind") == "oracle" and not o:
        return f"no float64 run of this output: element-wise {'PASS' if row['passed'] else 'FAIL'} decides"
    if not o:
        return None
    rel = "<=" if o["passed"] else ">"
    text = (f"RMSE to float64: candidate {num(o['candidate_rmse'], SHORT)} {rel} {o['multiplier']:g} x reference "
            f"{num(o['reference_rmse'], SHORT)} + {o['slack']:.0e} "
            f"({'float32 noise' if o['passed'] else 'beyond float32 noise'})")
    if gate.get("kind") == "oracle":
        text += (f" (gate oracle: {'PASS' if row['passed'] else 'FAIL'}; element-wise "
                 f"{'PASS' if gate['elementwise_passed'] else 'FAIL'})")
    return text


def oracle_shown(row: dict, verbose: bool = False) -> str | None:
    """The oracle's line where the element-wise verdict failed (every judged row with ``verbose``)."""
    text = oracle(row)
    elementwise = (row.get("gate") or {}).get("elementwise_passed", row["passed"])
    return text if text and (verbose or not elementwise) else None


def noise_hint(comp: dict) -> str | None:
    """A pair that failed element-wise only from float32 noise, said once, with the gate that judges it so."""
    gated = any((r.get("gate") or {}).get("kind") == "oracle" for r in comp["outputs"])
    if comp["passed"] or gated or not within_noise(comp):
        return None
    return ("every failing output is float32 noise: the candidate's RMSE to the float64 run is within "
            "torch._dynamo same()'s 2x of the reference's own; --gate oracle judges it so")


def _verdict(entry: dict) -> str:
    return "SKIPPED" if entry.get("skipped") else ("PASS" if entry["passed"] else "FAIL")


def generation_lines(results: dict, *, verbose: bool = False) -> list[str]:
    """Per pair: the verdict and its summary, then per row where it parted (every row with ``verbose``)."""
    entries = results.get("generation")
    if entries is None:
        return []
    cfg = results.get("config") or {}
    beams = cfg.get("num_beams", 1)
    lines = [f"generation ({'greedy' if beams == 1 else f'{beams} beams'}, {cfg.get('max_new_tokens')} new tokens)"]
    if not entries:
        lines.append("  nothing compared: the reference did not run")
    for e in entries:
        lines.append(f"  {e['reference']} vs {e['candidate']}: {_verdict(e)}  {e.get('summary') or e.get('error')}")
        for r in e.get("rows", []):
            if r["first_divergence_step"] is None and not verbose:
                continue
            where = "equal" if r["first_divergence_step"] is None else f"parts at step {r['first_divergence_step']}"
            scores = ", ".join(f"{k} {num(s['max_abs_diff'], SHORT)}{'' if s['passed'] else ' FAIL'}"
                               for k, s in r["scores"].items())
            lines.append(f"    row {r['row']}: {where} (score max abs diff over {_steps(r)} steps: {scores})")
            if r.get("text"):
                lines.append(f"      {e['reference']}: {r['text'][0]!r}")
                lines.append(f"      {e['candidate']}: {r['text'][1]!r}")
            else:
                lines.append(f"      tokens {e['reference']}: {r['tokens'][0]}  {e['candidate']}: {r['tokens'][1]}")
    return lines


def _steps(row: dict) -> int:
    return max([s["steps"] for s in row["scores"].values()] or [0])


def pipeline_lines(results: dict, *, verbose: bool = False) -> list[str]:
    """Per pair: the verdict and its summary, then each flip (every input with ``verbose``)."""
    entries = results.get("pipeline")
    if entries is None:
        return []
    lines = ["pipeline"]
    if not entries:
        lines.append("  nothing compared: the reference did not run")
    for e in entries:
        lines.append(f"  {e['reference']} vs {e['candidate']}: {_verdict(e)}  {e.get('summary') or e.get('error')}")
        for f in e.get("flips", []):
            margin = f" (reference margin {f['margin']:.3g})" if "margin" in f else ""
            span = f" at {f['span']}" if "span" in f else ""
            lines.append(f"    flip: input {f['index']}{span}: {f['label'][0]} -> {f['label'][1]}{margin}")
        if verbose:
            for n, item in enumerate(e.get("items", [])):
                mark = "" if item["agrees"] and item["scores_within"] else "  <- differs"
                lines.append(f"    input {n}: {_short(item)}{mark}")
    return lines


def _short(item: dict) -> str:
    for key in ("label", "answer", "top_k", "text"):
        if key in item:
            return f"{key} {item[key][0]!r} vs {item[key][1]!r}"
    return f"{item.get('agreeing')}/{item.get('total')} tokens agree"


# --- facts the HTML and Markdown generation / pipeline tables share ---------------------------------

KIND_WORDS = {"near_tie": "near tie", "generation_loop": "generation loop differs",
              "forward_drift": "forward pass drifts"}


def first_parted(entry: dict) -> dict | None:
    """The row that parts first (earliest step, then lowest row): the one the pair's summary explains."""
    parted = [r for r in entry.get("rows") or [] if r.get("first_divergence_step") is not None]
    return min(parted, key=lambda r: (r["first_divergence_step"], r["row"])) if parted else None


def generation_detail(entry: dict) -> str:
    """The pair's verdict in a few words for a summary line; the full reason is in its section."""
    if entry.get("error"):
        return entry["error"]
    first = first_parted(entry)
    if first is None:
        return entry.get("summary") or ""
    parted = sum(r.get("first_divergence_step") is not None for r in entry["rows"])
    kind = (first.get("reason") or {}).get("kind")
    return (f"{parted} of {len(entry['rows'])} rows part, first at step {first['first_divergence_step']} "
            f"(row {first['row']}): {KIND_WORDS.get(kind, kind or 'reason unknown')}")


def reason_sentence(reason: dict, ref: str, cand: str) -> str:
    """The reason in one short sentence; the settings it names are listed apart (``settings``) and the
    full wording stays in ``reason.text``."""
    kind, step = reason.get("kind"), reason.get("step")
    toks = reason.get("tokens") or {}
    if kind == "near_tie":
        return (f"near tie at step {step}: {ref}'s {reason.get('scores')} scores put token {toks.get(ref)} only "
                f"{num(reason.get('margin'), '.3g')} above {toks.get(cand)}, within the drift of those two scores "
                f"({num(reason.get('pair_drift'), '.3g')}), and the logits agree within tolerance: a numerically "
                "benign flip")
    if kind == "generation_loop":
        return (f"generation loop differs at step {step}: the logits agree (drift {num(reason.get('drift'), '.3g')})"
                f" but {ref} chose {toks.get(ref)} and {cand} {toks.get(cand)}")
    if kind == "forward_drift":
        first = reason.get("forward_first_divergence")
        return (f"forward pass drifts at step {step}: the next-token logits differ by {num(reason.get('drift'), '.3g')}"
                ", beyond tolerance" + (f"; the forward comparison first diverges at {first}" if first else ""))
    return str(reason.get("text") or "no reason recorded")


def settings(entry: dict, reason: dict | None = None) -> list[tuple]:
    """(setting, reference value, candidate value, note) per generation setting that differs, is not applied
    or was dropped: from the pair's ``config_diff`` / ``not_applied`` and the reason's ``dropped``."""
    ref, cand = entry.get("reference"), entry.get("candidate")
    diff = {d["setting"]: d for d in entry.get("config_diff") or [] if isinstance(d, dict) and "setting" in d}
    notes: dict = {}
    for fw, keys in (entry.get("not_applied") or {}).items():
        for k in keys:
            notes.setdefault(k, []).append(f"{fw}'s generate never reads it")
    for fw, keys in ((reason or {}).get("dropped") or {}).items():
        for k in keys:
            notes.setdefault(k, []).append(f"{fw}'s generate rebuilt its config from config.json, dropping it")
    rows = []
    for k in list(diff) + [k for k in notes if k not in diff]:
        d = diff.get(k, {})
        rows.append((k, repr(d[ref]) if ref in d else "-", repr(d[cand]) if cand in d else "-",
                     "; ".join(notes.get(k, []))))
    return rows


def prompt(results: dict, row: int) -> str | None:
    """The text row ``row`` generated from (``inputs.texts`` holds one per batch row); None for token ids."""
    texts = (results.get("inputs") or {}).get("texts") or []
    return texts[row] if 0 <= row < len(texts) else None


def pipeline_outputs(item: dict) -> tuple[str, str]:
    """What each side's pipeline returned for one input, as two short strings."""
    for key in ("label", "answer"):
        if key in item:
            scores = item.get("score") or [None, None]
            return tuple(f"{v}" + ("" if s is None else f" ({s:.3g})") for v, s in zip(item[key], scores))
    if "top_k" in item:
        return tuple(", ".join(map(str, side)) for side in item["top_k"])
    if "text" in item:
        return tuple(str(t) for t in item["text"])
    flips = item.get("flips") or []
    if flips:
        return tuple("; ".join(f"{f['span'][0]}: {f['label'][i]}" for f in flips) for i in (0, 1))
    shared = f"{item.get('agreeing')}/{item.get('total')} entity spans agree"
    return shared, shared


def item_verdict(item: dict) -> str:
    """``agrees``, ``flip (...)``, ``differs`` or ``scores outside tolerance`` for one pipeline input."""
    if "flip" in item:
        f = item["flip"]
        return (f"flip (reference margin {num(f.get('margin'), '.3g')}, candidate margin "
                f"{num(f.get('candidate_margin'), '.3g')})")
    if item.get("flips"):
        return f"{len(item['flips'])} entity label flip(s)"
    if not item.get("agrees"):
        return "differs"
    return "agrees" if item.get("scores_within") else "agrees; scores outside tolerance"
