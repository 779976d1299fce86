"""Compare two frameworks' generations (``--generate``) and say why they parted.

Per row: the generated tokens (exact), the first step where they differ, the
per-step scores within tolerance up to and including that step (until then
both frameworks saw the same tokens), and the decoded text. At the step where
a row parts, one of three reasons:

- ``near_tie``: the forward pass agrees within tolerance and the reference's
  margin between the two chosen tokens is no larger than the drift measured
  there: the flip is numerically benign.
- ``generation_loop``: the forward pass agrees and the margin is larger than the
  drift, so the loop around it differs: the effective generation configs are
  diffed and the settings a framework does not apply (its generate never reads
  them) are named.
- ``forward_drift``: the next-token logits themselves differ beyond tolerance:
  the forward comparison's first divergence is where to look.

Each reason also records both sides' best candidates at that step with their
scores (``top_candidates``), so a report can show how close the choice was.
"""

from __future__ import annotations

import numpy as np

KINDS = ("raw", "processed")
TOP_K = 5  # candidates recorded per side at the step where a row parts


def _first_diff(a: np.ndarray, b: np.ndarray) -> int | None:
    diff = np.nonzero(a != b)[0]
    return int(diff[0]) if diff.size else None


def _close(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> tuple[bool, float | None]:
    """(within tolerance, max abs diff over elements finite on both sides); equal infinities (a processor's
    -inf) agree, any other non-finite value fails."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    fin = np.isfinite(a) & np.isfinite(b)
    same_inf = ~fin & (a == b)
    diff = np.abs(np.where(fin, a - b, 0.0))
    ok = bool(((diff <= atol + rtol * np.abs(np.where(fin, b, 0.0))) & fin | same_inf).all())
    return ok, (float(diff.max()) if fin.any() else None)


def _finite(x) -> float | None:
    """A JSON-safe number: None for NaN and infinities (a processor's -inf)."""
    x = float(x)
    return x if np.isfinite(x) else None


def _shown(x) -> str:
    return "n/a" if x is None else f"{abs(x):.3g}"


def not_applied(info: dict) -> list:
    """Settings in a framework's loaded generation config that its generate module never reads."""
    reads = set(info.get("reads") or ())
    return sorted(k for k in (info.get("loaded_config") or info.get("config") or {}) if reads and k not in reads)


def replaced(info: dict) -> list:
    """Settings of the loaded generation config that generate itself dropped or changed (it rebuilt the config
    from config.json)."""
    loaded, used = info.get("loaded_config"), info.get("config") or {}
    return [] if loaded is None else sorted(k for k in loaded if loaded[k] != used.get(k))


def _config_diff(ref: str, cand: str, ref_info: dict, cand_info: dict) -> list:
    a, b = ref_info.get("config") or {}, cand_info.get("config") or {}
    return [{"setting": k, ref: a.get(k), cand: b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _top(scores: np.ndarray, logits: np.ndarray | None, k: int = TOP_K) -> list:
    """The k best tokens of the scores a side chose from at the step where it parted, best first (with the raw
    logit when those scores are processed): the reports show a near tie or a penalised token from these."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:k]
    return [{"token": int(t), "score": _finite(scores[t]),
             **({} if logits is None else {"logit": _finite(logits[t])})} for t in order]


def _loop_settings(ref: str, cand: str, ri: dict, ci: dict) -> tuple[dict, dict, list, str]:
    """(settings not applied per framework, settings generate dropped per framework, the effective config diff,
    the words naming them) for a ``generation_loop`` reason."""
    missing, dropped_by, parts, gone = {}, {}, [], set()
    for fw, info in ((ref, ri), (cand, ci)):
        keys, cfg = not_applied(info), info.get("loaded_config") or info.get("config") or {}
        if keys:
            missing[fw] = keys
            parts.append(f"{fw} does not apply {', '.join(f'{k}={cfg[k]!r}' for k in keys)} "
                         f"(its generate never reads {'it' if len(keys) == 1 else 'them'})")
        dropped = replaced(info)
        gone.update(dropped)
        if dropped:
            dropped_by[fw] = dropped
            parts.append(f"{fw}'s generate rebuilt its generation config from config.json (the loaded one is "
                         f"marked _from_model_config), dropping {', '.join(f'{k}={cfg[k]!r}' for k in dropped)}")
    diff = _config_diff(ref, cand, ri, ci)
    parts += [f"{d['setting']} is {d[ref]!r} in the generation config {ref} generated with and {d[cand]!r} in "
              f"{cand}'s" for d in diff if d["setting"] not in gone]
    return missing, dropped_by, diff, "; ".join(parts) or "the effective generation configs are equal"


def _reason(ref: str, cand: str, step: int, row: int, arrays: tuple, infos: tuple, tol: tuple,
            forward: dict | None) -> dict:
    """Why row ``row`` parted at ``step`` (see the module docstring)."""
    (ra, ca), (ri, ci) = arrays, infos
    seq_r = ra["sequences"][row, ri["prompt_length"] + step]
    seq_c = ca["sequences"][row, ri["prompt_length"] + step]
    raw_r, raw_c = ra["raw"][step, row], ca["raw"][step, row]
    ok, drift = _close(raw_c, raw_r, *tol)
    # The scores each side chose from: processed when both returned them, else the raw logits.
    kind = "processed" if "processed" in ra and "processed" in ca and ra["processed"].shape[1] == \
        ra["sequences"].shape[0] else "raw"
    s_r, s_c = ra[kind][step, row].astype(np.float64), ca[kind][step, row].astype(np.float64)
    margin = _finite(s_r[seq_r] - s_r[seq_c])
    delta = s_c - s_r
    pair_drift = float(abs(delta[seq_r]) + abs(delta[seq_c])) if np.isfinite(delta[[seq_r, seq_c]]).all() else None
    flipped = margin is not None and int(np.argmax(s_r)) == seq_r and int(np.argmax(s_c)) == seq_c
    same_scores = ok if kind == "raw" else _close(s_c, s_r, *tol)[0]
    top2 = np.sort(raw_r.astype(np.float64))[-2:]
    out = {"step": step, "row": row, "tokens": {ref: int(seq_r), cand: int(seq_c)}, "forward_agrees": ok,
           "drift": drift, "scores": kind, "margin": margin, "pair_drift": pair_drift,
           "top2_margin": float(top2[1] - top2[0]),
           "top_candidates": {ref: _top(s_r, raw_r if kind == "processed" else None),
                              cand: _top(s_c, raw_c if kind == "processed" else None)}}
    if ok and same_scores and flipped and pair_drift is not None and margin <= pair_drift:
        out["kind"] = "near_tie"
        out["text"] = (f"near tie: at step {step} the reference's {kind} scores put token {int(seq_r)} only "
                       f"{margin:.3g} above {int(seq_c)}, within the drift of those two scores ({pair_drift:.3g}; "
                       f"logits agree within tolerance, max drift {drift:.3g}): a numerically benign flip")
    elif ok:
        missing, dropped, diff, named = _loop_settings(ref, cand, ri, ci)
        if not same_scores:
            named = f"the processed scores differ while the logits agree; {named}"
        out.update(kind="generation_loop", not_applied=missing, dropped=dropped, config_diff=diff,
                   text=f"generation loop differs: at step {step} the logits agree (drift {_shown(drift)}, margin "
                        f"{_shown(margin)}) but {ref} chose {int(seq_r)} and {cand} {int(seq_c)}: {named}")
    else:
        first = (forward or {}).get("first_divergence")
        where = f"; the forward comparison first diverges at {first}" if first else ""
        out.update(kind="forward_drift", forward_first_divergence=first,
                   text=f"forward pass drifts: at step {step} the next-token logits differ by "
                        f"{drift if drift is not None else float('nan'):.3g}, beyond tolerance (margin "
                        f"{_shown(margin)}){where}")
    return out


def _row(r: int, arrays: tuple, infos: tuple, tol: tuple, beams: bool) -> dict:
    """One row: tokens, first diverging step, scores up to it, text."""
    (ra, ca), (ri, ci) = arrays, infos
    p = ri["prompt_length"]
    toks_r, toks_c = ra["sequences"][r, p:], ca["sequences"][r, p:]
    step = _first_diff(toks_r, toks_c)
    upto = len(toks_r) if step is None else step + 1
    row = {"row": r, "equal": step is None, "first_divergence_step": step,
           "tokens": [toks_r.tolist(), toks_c.tolist()], "scores": {}}
    for kind in KINDS:
        if kind in ra and kind in ca and not (beams and kind == "processed"):
            ok, worst = _close(ca[kind][:upto, r], ra[kind][:upto, r], *tol)
            row["scores"][kind] = {"passed": ok, "max_abs_diff": worst, "steps": upto}
    texts = [i.get("text") for i in (ri, ci)]
    if all(t is not None for t in texts):
        row["text"] = [texts[0][r], texts[1][r]]
    return row


def compare(ref: str, cand: str, ref_run, cand_run, *, tolerance: tuple, forward: dict | None = None,
            num_beams: int = 1, precision: str | None = None) -> dict:
    """results.json's ``generation[]`` entry for one pair (runs are executor.FrameworkRun). With ``precision``
    (a bf16 / fp16 side) the pair passes by vLLM's rule instead (``_logprobs_close``)."""
    entry = {"reference": ref, "candidate": cand, "passed": False, "first_divergence_step": None, "rows": []}
    infos = (ref_run.generation or {}, cand_run.generation or {})
    failed = [(fw, i["error"]) for fw, i in zip((ref, cand), infos) if i.get("error")]
    if failed or ref_run.gen_arrays is None or cand_run.gen_arrays is None:
        entry["error"] = "; ".join(f"{fw} generate failed: {e}" for fw, e in failed) or "no generation to compare"
        entry["failed_everywhere"] = len(failed) == 2  # the check's error (exit 3), not a mismatch
        return entry
    arrays = ({k: np.asarray(ref_run.gen_arrays[k]) for k in ref_run.gen_arrays},
              {k: np.asarray(cand_run.gen_arrays[k]) for k in cand_run.gen_arrays})
    rows = [_row(r, arrays, infos, tolerance, num_beams > 1) for r in range(arrays[0]["sequences"].shape[0])]
    for row in rows:
        if row["first_divergence_step"] is not None:
            row["reason"] = _reason(ref, cand, row["first_divergence_step"], row["row"], arrays, infos,
                                    tolerance, forward)
    steps = [r["first_divergence_step"] for r in rows if r["first_divergence_step"] is not None]
    entry.update(first_divergence_step=min(steps) if steps else None, rows=rows,
                 passed=not steps and all(s["passed"] for r in rows for s in r["scores"].values()),
                 steps=int(arrays[0]["sequences"].shape[1] - infos[0]["prompt_length"]),
                 scores={fw: i.get("scores") for fw, i in zip((ref, cand), infos)},
                 config_diff=_config_diff(ref, cand, *infos),
                 not_applied={fw: not_applied(i) for fw, i in zip((ref, cand), infos) if not_applied(i)})
    if precision is not None:
        _logprobs_close(entry, arrays, infos[0]["prompt_length"], precision)
    entry["summary"] = summary(entry)
    return entry


def _logprobs_close(entry: dict, arrays: tuple, prompt: int, dtype: str) -> None:
    """vLLM's check_logprobs_close (parity.numerics.precision): a row may part, but at its first differing token
    each side's token must be among the other's top-N scores there; nothing after that step is compared."""
    from parity.numerics.precision import TOP_N, logprobs_close

    ra, ca = arrays
    kind = "processed" if "processed" in ra and "processed" in ca else "raw"
    ok = True
    for row in entry["rows"]:
        step = row["first_divergence_step"]
        if step is None:
            continue
        r = row["row"]
        row["logprobs_close"] = logprobs_close(ra[kind][step, r], ca[kind][step, r],
                                               ra["sequences"][r, prompt + step], ca["sequences"][r, prompt + step])
        ok = ok and row["logprobs_close"]
    entry["gate"] = {"kind": "logprobs_close", "dtype": dtype, "top_n": TOP_N, "scores": kind,
                     "elementwise_passed": entry["passed"]}
    entry["passed"] = ok


def summary(entry: dict) -> str:
    """One line for the console and the reports."""
    if entry.get("error"):
        return entry["error"]
    rows = entry["rows"]
    parted = [r for r in rows if r["first_divergence_step"] is not None]
    bad_scores = sorted({k for r in rows for k, s in r["scores"].items() if not s["passed"]})
    gate = entry.get("gate")
    if gate:
        far = sum(1 for r in parted if not r.get("logprobs_close"))
        return (f"judged in {gate['dtype']} by vLLM's rule (at the first differing token each side's token in the "
                f"other's top-{gate['top_n']}): {len(parted)} of {len(rows)} rows part, {far} beyond the top-"
                f"{gate['top_n']}")
    if not parted:
        tail = f"; {', '.join(bad_scores)} scores outside tolerance" if bad_scores else ""
        return f"all {len(rows)} rows generate the same {entry.get('steps')} tokens{tail}"
    first = min(parted, key=lambda r: (r["first_divergence_step"], r["row"]))
    return (f"{len(parted)} of {len(rows)} rows part, first at step {first['first_divergence_step']} (row "
            f"{first['row']}): {first['reason']['text']}")
