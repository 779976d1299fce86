"""The behaviour sections every report shows (``--generate``, ``--pipeline``, logit agreement), as plain
lines from a results dict; console prints them, Markdown, HTML and JUnit wrap them."""

from __future__ import annotations

from parity.numerics.format import SHORT, num


def agreement(row: dict) -> str | None:
    """``top-1 99.5%, KL 1.2e-09`` for a logits output (None for others), with the gate when it decided."""
    if "top1_agreement" not in row:
        return None
    top1 = "-" if row.get("top1_agreement") is None else f"{100 * row['top1_agreement']:.1f}%"
    text = f"top-1 {top1}, mean KL {num(row.get('mean_kl'), SHORT)}"
    gate = row.get("gate")
    if gate and gate.get("kind") == "top1":
        text += (f" (gate top1 >= {gate['min']:g}: {'PASS' if row['passed'] else 'FAIL'}; element-wise "
                 f"{'PASS' if gate['elementwise_passed'] else 'FAIL'})")
    return text


def agreement_shown(row: dict, verbose: bool = False) -> str | None:
    """The agreement text where it says something beyond the table: a top-1 differs or the gate decided (every
    logits row with ``verbose``); results.json always has the numbers."""
    text = agreement(row)
    return text if text and (verbose or (row.get("gate") or {}).get("kind") == "top1" or row.get("top1_agreement") != 1.0) else None


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
