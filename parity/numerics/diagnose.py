"""`--explain`: where two frameworks part, why, and which one drifted.

Parent-side and numpy-only: it reads the comparisons, the load reports and
what the workers' probes measured (probes.py), and writes the ``diagnosis``
section of results.json plus a short narrative per pair.
"""

from __future__ import annotations

import re

from parity.numerics.compare import compare_array, valid_mask
from parity.contracts.outputs import layer_of, model_order
from parity.numerics.format import SHORT, num

_LAYER_OF_WEIGHT = re.compile(r"(?:^|[./])(?:layer|layers|h|block|blocks)[./_]+(\d+)(?:[./]|$)")
DRIFT_RATIO = 10.0  # one side this much farther from the float64 oracle than the other has drifted


def stage(name: str) -> str:
    """Human place of an output in the forward pass."""
    layer = layer_of(name)
    if layer is None:
        return "head"
    prefix, kind, n = layer
    prefix = prefix.replace("_", " ")
    if kind == "attentions":
        return f"{prefix}layer {n} attention"
    return f"{prefix}embeddings" if n == 0 else f"{prefix}layer {n - 1} output"


def layer_of_weight(name: str) -> str:
    if "embed" in name:
        return "embeddings"
    m = _LAYER_OF_WEIGHT.search(name.replace("/", "."))
    return f"layer {m.group(1)}" if m else "head"


def in_stage(layer: str, where: str | None) -> bool:
    """Whether a weight's place ("layer 1", "embeddings") is the stage where outputs part
    ("layer 1 output", "decoder embeddings"); "layer 1" is not in "layer 10 output"."""
    return bool(where) and re.search(rf"(^|\s){re.escape(layer)}(\s|$)", where) is not None


def oracle_distances(ref_name: str, runs: dict, names: list, tolerance, attention_mask) -> dict:
    """Each framework's outputs judged against the float64 run: {fw: {output: row}}."""
    oracle = runs[ref_name].outputs64
    dist = {}
    for fw, run in runs.items():
        if run.status != "ok":
            continue
        rows = {}
        for name in names:
            if name not in oracle or name not in run.outputs:
                continue
            atol, rtol = tolerance(name)
            exp = oracle[name]
            rows[name] = compare_array(name, run.outputs[name], exp, atol=atol, rtol=rtol,
                                       valid=valid_mask(name, exp.shape, attention_mask))
        dist[fw] = rows
    return dist


def layer_table(comp: dict) -> list[dict]:
    """Per layer: the error it received (its input hidden state) and passed on (its output)."""
    by_name = {o["name"]: o for o in comp["outputs"]}
    rows = []
    for name in model_order(by_name):
        layer = layer_of(name)
        if layer is None or layer[1] != "hidden_states" or layer[2] == 0:
            continue
        prefix, _, n = layer
        prev = by_name.get(f"{prefix}hidden_states.{n - 1}", {})
        received, passed_on = prev.get("max_abs_diff"), by_name[name].get("max_abs_diff")
        attn = by_name.get(f"{prefix}attentions.{n - 1}", {})
        growth = (passed_on / received) if received and passed_on is not None else None
        rows.append({"layer": f"{prefix.replace('_', ' ')}layer {n - 1}", "received": received,
                     "passed_on": passed_on, "growth": growth, "attention": attn.get("max_abs_diff"),
                     "input_passed": prev.get("passed", True),
                     "passed": by_name[name]["passed"] and attn.get("passed", True)})
    # A layer introduces drift when its input still agrees and its output (or attention) does not;
    # the layers after it only carry the error. None does when the embeddings already differ.
    for r in rows:
        r["introduces"] = r["input_passed"] and not r["passed"]
    return rows


def _which_side(comp: dict, dist: dict, oracle_fw: str | None) -> dict:
    ref, cand, first = comp["reference"], comp["candidate"], comp["first_divergence"]
    passing_atol = max((o.get("required_atol") or 0.0 for o in comp["outputs"]), default=0.0)
    if not dist or first is None or first not in dist.get(ref, {}) or first not in dist.get(cand, {}):
        return {"drifted": None, "verdict": "no float64 oracle" if not dist else "no divergence",
                "passing_atol": passing_atol}
    r, c = dist[ref][first], dist[cand][first]
    d_ref, d_cand = r["max_abs_diff"] or 0.0, c["max_abs_diff"] or 0.0
    out = {"at": first, "oracle": oracle_fw, "distance": {ref: d_ref, cand: d_cand}, "passing_atol": passing_atol}
    if r["passed"] and not c["passed"] or d_cand > DRIFT_RATIO * max(d_ref, 1e-30) and not c["passed"]:
        out.update(drifted=cand, verdict=f"{cand} drifted")
    elif c["passed"] and not r["passed"] or d_ref > DRIFT_RATIO * max(d_cand, 1e-30) and not r["passed"]:
        out.update(drifted=ref, verdict=f"{ref} drifted")
    else:
        out.update(drifted=None, verdict="tolerance too tight: both frameworks are within float32 noise "
                                         "of the float64 truth")
    return out


def _weights(fw_results: dict, comp: dict) -> dict:
    """Newly initialised (missing) weights per framework, linked to the stage where the pair parts."""
    found = {}
    first_stage = stage(comp["first_divergence"]) if comp["first_divergence"] else None
    for fw in (comp["reference"], comp["candidate"]):
        missing = (fw_results.get(fw, {}).get("load") or {}).get("missing") or []
        if missing:
            linked = [w for w in missing if in_stage(layer_of_weight(w), first_stage)]
            found[fw] = {"newly_initialised": missing, "explains_divergence": linked}
    return found


def _weight_diff(exports: dict, comp: dict, keep: int = 20) -> dict | None:
    """The candidate's loaded weights against the reference's, tensor by tensor (names mapped to
    PyTorch's, transposes undone), each differing tensor placed in a layer and linked to the
    divergence when it sits where the outputs part."""
    from parity.numerics.weights_diff import diff_weights

    ref, cand = comp["reference"], comp["candidate"]
    if ref not in exports or cand not in exports:
        return None
    w = diff_weights(exports[ref], exports[cand])
    first_stage = stage(comp["first_divergence"]) if comp["first_divergence"] else None
    differing = [{**d, "layer": layer_of_weight(d["name"])} for d in w.differing]
    linked = [d["name"] for d in differing if in_stage(d["layer"], first_stage)]
    return {"compared": w.reference_count, "identical": w.identical, "max_abs_diff": w.max_abs_diff,
            "missing": w.missing[:keep], "unexpected": w.unexpected[:keep],
            "shape_mismatch": w.shape_mismatch[:keep], "differing": differing[:keep],
            "counts": {"missing": len(w.missing), "unexpected": len(w.unexpected),
                       "shape_mismatch": len(w.shape_mismatch), "differing": len(differing)},
            "explains_divergence": linked}


def _inputs(runs: dict) -> dict:
    received = {fw: (run.explain or {}).get("received") for fw, run in runs.items() if run.explain}
    defaults = {fw: (run.explain or {}).get("defaults", {}) for fw, run in runs.items() if run.explain}
    notes = []
    for key in sorted({k for d in defaults.values() for k in d}):
        moved = {fw: d[key]["max_abs_change"] for fw, d in defaults.items() if key in d}
        differs = [fw for fw, v in moved.items() if v > 0]
        if differs:
            desc = next(iter(defaults.values()))[key]["explicit_default"] if defaults else "the default"
            notes.append(f"{key} not given; given explicitly as {desc}, the outputs of "
                         f"{', '.join(differs)} change (by up to {num(max(moved[f] for f in differs), SHORT)}): "
                         f"{' and '.join(differs)} fill {key} differently from the documented default")
    return {"received": received, "defaults": defaults, "notes": notes}


def diagnose(comparisons: list, runs: dict, fw_results: dict, *, reference: str, tolerance,
             attention_mask, exports: dict | None = None) -> dict:
    """``exports``: {framework: weight export} (parity.worker.weights) for the tensor-by-tensor weights check."""
    oracle_fw = next((fw for fw in [reference, *runs] if runs.get(fw) is not None
                      and runs[fw].outputs64 is not None), None)
    names = [o["name"] for c in comparisons for o in c["outputs"]]
    names = list(dict.fromkeys(names))
    dist = oracle_distances(oracle_fw, runs, names, tolerance, attention_mask) if oracle_fw else {}
    run_to_run = {fw: max((run.explain or {}).get("repeat_spread", {}).values(), default=None)
                  for fw, run in runs.items() if run.explain}
    f32_vs_f64 = max((r["max_abs_diff"] or 0.0 for r in dist.get(oracle_fw, {}).values()), default=None)
    result = {
        "oracle": {"framework": oracle_fw,
                   "status": "ok" if oracle_fw else _oracle_status(runs, reference),
                   "distance": {fw: {n: r["max_abs_diff"] for n, r in rows.items()} for fw, rows in dist.items()}},
        "noise_floor": {"run_to_run": run_to_run, "float32_vs_float64": f32_vs_f64},
        "inputs": _inputs(runs),
        "pairs": [],
    }
    for comp in comparisons:
        padded = [o["padded"]["max_abs_diff"] for o in comp["outputs"]
                  if (o.get("padded") or {}).get("max_abs_diff") is not None]
        atol = max((o["atol"] for o in comp["outputs"]), default=0.0)
        pair = {"reference": comp["reference"], "candidate": comp["candidate"], "atol": atol,
                "first_divergence": comp["first_divergence"],
                "stage": stage(comp["first_divergence"]) if comp["first_divergence"] else None,
                "layers": layer_table(comp), "side": _which_side(comp, dist, oracle_fw),
                "weights": _weights(fw_results, comp),
                "weight_diff": _weight_diff(exports or {}, comp),
                "padded_max_abs_diff": max(padded) if padded else None,
                "loading": loading_differences(fw_results, comp["reference"], comp["candidate"])}
        if any(w["explains_divergence"] for w in pair["weights"].values()):
            # The oracle reruns the reference's own weights: it judges arithmetic, not weights.
            pair["side"].update(drifted=None, verdict="the weights differ, not the arithmetic: newly initialised "
                                                      "tensors sit where the outputs part")
        pair["narrative"] = narrative(pair, result)
        result["pairs"].append(pair)
    return result


def _oracle_status(runs: dict, reference: str) -> str:
    for run in runs.values():
        f64 = (run.explain or {}).get("float64")
        if f64 and f64 != "ok":
            return f64
    return "no framework that ran can upcast to float64 (the oracle runs in PyTorch)"


def narrative(pair: dict, diag: dict) -> list[str]:
    """The pair's diagnosis in sentences: where the frameworks part, which side drifted, weights,
    inputs, masks and the noise floor."""
    ref, cand = pair["reference"], pair["candidate"]
    return [*_where(pair), *_loading_lines(pair), *_which_side_lines(pair, diag), *_weights_lines(pair),
            *_inputs_lines(diag["inputs"], ref, cand), *_masks_lines(pair), _noise_line(diag, ref, cand)]


def loading_differences(fw_results: dict, ref: str, cand: str) -> list[dict]:
    """The loader settings (dtype, attention implementation: ``frameworks.<key>.settings``) the two sides differ in."""
    a = (fw_results.get(ref) or {}).get("settings") or {}
    b = (fw_results.get(cand) or {}).get("settings") or {}
    return [{"setting": k, ref: a[k], cand: b[k]} for k in ("dtype", "attn_implementation")
            if a.get(k) and b.get(k) and a[k] != b[k]]


def _loading_lines(pair: dict) -> list[str]:
    ref, cand = pair["reference"], pair["candidate"]
    what = {"dtype": "dtype", "attn_implementation": "attention implementation"}
    return [f"Cause: the sides load with another {what[d['setting']]}: {ref} {d[ref]}, {cand} {d[cand]}"
            + (" (rounding of every weight and activation: drift from the embeddings on)" if d["setting"] == "dtype"
               else " (another kernel: differences within float32 rounding)") + "."
            for d in pair.get("loading") or []]


def _where(pair: dict) -> list[str]:
    ref, cand = pair["reference"], pair["candidate"]
    if pair["first_divergence"] is None:
        return [f"{ref} vs {cand}: every output within tolerance."]
    lines = [f"{ref} vs {cand}: first divergence at {pair['first_divergence']} ({pair['stage']})."]
    intro = next((r for r in pair["layers"] if r["introduces"]), None)
    if pair["stage"].endswith("embeddings"):
        lines.append("Where: the embeddings already differ, before any layer runs: look at the embedding "
                     "weights and at the inputs each framework filled in.")
    elif intro and intro["growth"] is not None:
        lines.append(f"Where: {intro['layer']} introduces the drift: the error it received was "
                     f"{num(intro['received'], SHORT)}, the error it passed on {num(intro['passed_on'], SHORT)} "
                     f"(x{intro['growth']:.3g}); later layers carry it.")
    return lines


def _which_side_lines(pair: dict, diag: dict) -> list[str]:
    ref, cand, side = pair["reference"], pair["candidate"], pair["side"]
    if side.get("distance"):
        d = side["distance"]
        lines = [f"Which side: {side['verdict']} (distance to the float64 {side['oracle']} run at "
                 f"{side['at']}: {ref} {num(d[ref], SHORT)}, {cand} {num(d[cand], SHORT)})."]
        if side["drifted"] is None:
            lines.append(f"A tolerance that would pass: atol={num(side['passing_atol'], SHORT)} at the same rtol.")
        return lines
    if pair["first_divergence"] is not None:
        return [f"Which side: unknown ({diag['oracle']['status']})."]
    return []


def _weights_lines(pair: dict) -> list[str]:
    """The tensor-by-tensor weights check, then the newly initialised weights per framework."""
    wd, weights = pair.get("weight_diff"), pair["weights"]
    lines = [] if wd is None else [_weight_diff_line(wd, pair["reference"], pair["candidate"])]
    if not weights and wd is None:
        lines.append("Weights: no newly initialised weights in either framework.")
    for fw, w in weights.items():
        linked = w["explains_divergence"]
        lines.append(f"Weights: {fw} newly initialised {len(w['newly_initialised'])} tensors "
                     f"({', '.join(w['newly_initialised'][:4])}{' ...' if len(w['newly_initialised']) > 4 else ''})"
                     + (f"; {', '.join(linked[:3])} sit where the outputs part: this explains the divergence."
                        if linked else "."))
    return lines


def _weight_diff_line(wd: dict, ref: str, cand: str) -> str:
    c = wd["counts"]
    head = (f"Weights: {wd['identical']}/{wd['compared']} tensors identical in {cand} and {ref} "
            "(names mapped, transposes undone)")
    extra = [f"{c[k]} {k.replace('_', ' ')}" for k in ("missing", "unexpected", "shape_mismatch") if c[k]]
    if not c["differing"]:
        return head + (f"; {', '.join(extra)}." if extra else ".")
    worst = wd["differing"][0]
    what = (f"{worst['name']} differs" if c["differing"] == 1 else
            f"{c['differing']} differ, the largest {worst['name']}")
    linked = wd["explains_divergence"]
    return (head + f"; {what} (max abs diff {num(worst['max_abs_diff'], SHORT)}, {worst['layer']})"
            + (f"; {', '.join(extra)}" if extra else "")
            + (f". {'It sits' if len(linked) == 1 else f'{len(linked)} of them sit'} where the "
               "outputs part: this explains the divergence." if linked else "."))


def _inputs_lines(inp: dict, ref: str, cand: str) -> list[str]:
    lines = []
    keys = next((v for v in inp["received"].values() if v), None)
    if keys:
        lines.append(f"Inputs: every framework received {', '.join(keys)}.")
    for fw in (ref, cand):
        for key, probe in (inp["defaults"].get(fw) or {}).items():
            verb = "changes nothing" if probe["max_abs_change"] == 0 else \
                f"changes outputs by up to {num(probe['max_abs_change'], SHORT)} (first {probe['first_changed']})"
            lines.append(f"  {key} not given; {fw} with explicit {probe['explicit_default']} {verb}.")
    lines.extend(f"  {n}" for n in inp["notes"])
    return lines


def _masks_lines(pair: dict) -> list[str]:
    if pair["padded_max_abs_diff"] is None:
        return []
    artefact = pair["first_divergence"] is None and pair["padded_max_abs_diff"] > pair["atol"]
    return [f"Masks: padded positions (excluded) differ by up to {num(pair['padded_max_abs_diff'], SHORT)}"
            + (": differences there are padding artefacts, not a bug." if artefact else ".")]


def _noise_line(diag: dict, ref: str, cand: str) -> str:
    noise = diag["noise_floor"]
    rr = ", ".join(f"{fw} {num(v, SHORT)}" for fw, v in noise["run_to_run"].items() if fw in (ref, cand))
    return (f"Noise floor: run to run {rr}; float32 vs float64 ({diag['oracle']['framework'] or '-'}) "
            f"{num(noise['float32_vs_float64'], SHORT)}.")
