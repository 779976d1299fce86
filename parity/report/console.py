"""Console summary, rendered from a results dict (never from live objects).

Strings in results can come from the checkpoint (its path, config, error
messages quoting it): every line is passed through ``clean`` so that terminal
escapes, carriage returns, newlines and bidi overrides print as visible
escapes instead of acting on the terminal or forging lines.
"""

from __future__ import annotations

import re

from parity.report.behaviour import agreement_shown, generation_lines, noise_hint, oracle_shown, pipeline_lines
from parity.numerics.format import SHORT, num
from parity.report.common import environments, source, stand_in

# C0/C1 controls and DEL, plus the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean(text: str) -> str:
    """One printable line: control and bidi characters become \\xNN / \\uNNNN escapes."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", str(text))


def mismatch_message(row: dict) -> str:
    """torch.testing-style: 'Mismatched elements: 2 / 3 (66.7%) ...'."""
    if row.get("error"):
        return row["error"]
    parts = [f"Mismatched elements: {row['mismatched']} / {row['total']} ({100 * row['mismatched_share']:.1f}%)"]
    nf = row.get("nonfinite") or {}
    nonfinite = bool(nf.get("reference") or nf.get("candidate"))
    idx = tuple(row.get("worst_index") or ())
    if nonfinite:  # worst_index is then the first NaN/Inf (compare.py)
        parts.append(f"NaN/Inf: {nf.get('reference', 0)} in reference, {nf.get('candidate', 0)} in candidate, "
                     f"first at index {idx}")
    if row.get("max_abs_diff") is not None:
        at = "" if nonfinite else f" at index {idx}"
        parts.append(f"Greatest absolute difference: {row['max_abs_diff']:.3g}{at} "
                     f"(up to {row['atol']:g} allowed)")
        parts.append(f"Greatest relative difference: {row['max_rel_diff']:.3g} (up to {row['rtol']:g} allowed)")
    return "; ".join(parts)


def render(results: dict, *, verbose: bool = False) -> str:
    lines = _header(results) + _frameworks(results)
    envs = environments(results)
    if envs:
        lines += ["", "  environments:"] + [f"    {line}" for line in envs]
    sched = results.get("schedule") or {}
    if sched and not sched.get("parallel") and len(sched.get("estimate_bytes") or {}) > 1:
        lines += ["", f"  schedule: {sched.get('reason')}"]
    if stand_in(results):
        lines += ["", stand_in(results)]
    from parity.report.loading import sections

    for title, section in sections(results, verbose):
        lines += ["", f"  {title}:"] + [f"    {line}" for line in section]
    for comp in results["comparisons"]:
        lines += _pair(comp, verbose)
    for section in (generation_lines(results, verbose=verbose), pipeline_lines(results, verbose=verbose)):
        if section:
            lines += ["", *section]
    if results.get("diagnosis"):
        lines += ["", *render_diagnosis(results["diagnosis"])]
    if results.get("nothing_compared"):
        lines += ["", results["nothing_compared"]]
    code = results["exit_code"]
    meaning = {0: "all comparisons pass", 1: "parity mismatch", 3: "a framework could not load or run",
               130: "interrupted, results incomplete"}
    lines += ["", f"verdict: {'PASS' if results['passed'] else 'FAIL'} (exit {code}: {meaning.get(code, '')})"]
    return "\n".join(clean(line) for line in lines)


def _header(results: dict) -> list[str]:
    """The checkpoint, its task and the batch."""
    ck, inp = results["checkpoint"], results["inputs"]
    shape = inp["shapes"].get("input_ids") or next(iter(inp["shapes"].values()), [])
    keys = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in inp["shapes"].items())
    lines = [f"parity check {ck['path']}",
             f"  model_type {ck['model_type']}, task {results['task']}, inputs {inp['source']}"
             f"{' (cached)' if inp.get('cache') == 'hit' else ''} "
             f"{shape} ({inp['padded_positions']} padded positions excluded)"]
    for name, why in ((results.get("config") or {}).get("chosen") or {}).items():
        if why:  # what parity chose for an option left out, where it is not the plain default
            lines.append(f"  chosen: --{name.replace('_', '-')} {why}")
    if inp.get("empty_rows"):
        rows = inp["empty_rows"]
        lines.append(f"  {len(rows)} row(s) all padding, excluded from every comparison (nothing to compare): "
                     f"{', '.join(map(str, rows))}")
    return lines + [f"  batch: {keys}", ""]


def _frameworks(results: dict) -> list[str]:
    """One row per framework (status, class, weights, device, seconds), then its error, weights and notes."""
    w = max([9] + [len(name) for name in results["frameworks"]])  # pt@v5:auto is wider than "framework"
    lines = [f"  {'framework':<{w}} {'status':<11} {'class':<34} {'weights':<40} {'device':<7} import  load    run"]
    for name, fw in results["frameworks"].items():
        sec = fw.get("seconds") or {}
        imp = f"{sec['import']:.1f}s" if "import" in sec else "-"
        load = f"{sec['load']:.1f}s" if "load" in sec else "-"
        run = f"{sec['run']:.2f}s" if "run" in sec else "-"
        lines.append(f"  {name:<{w}} {fw['status']:<11} {str(fw.get('class_name') or '-'):<34} "
                     f"{source(fw, cache=True):<40} {str(fw.get('device') or '-'):<7} {imp:<7} {load:<7} {run}")
        if fw.get("error"):
            lines.append(f"  {'':<{w}} {fw['error']}")
        load_info = fw.get("load") or {}
        for key in ("missing", "mismatched"):
            if load_info.get(key):
                lines.append(f"  {'':<{w}} {key} weights: {', '.join(load_info[key][:6])}"
                             + (" ..." if len(load_info[key]) > 6 else ""))
        for note in load_info.get("notes", []):
            lines.append(f"  {'':<{w}} note: {note}")
    return lines


def _pair(comp: dict, verbose: bool) -> list[str]:
    """One pair's verdict line and table, then agreement, the first mismatch and what was not compared."""
    rows = comp["outputs"]
    w = max([22] + [len(r["name"]) for r in rows])
    ok = sum(r["passed"] for r in rows)
    verdict = "PASS" if comp["passed"] else "FAIL"
    gated = any((r.get("gate") or {}).get("kind") == "oracle" for r in rows)
    within = "pass the oracle gate, element-wise" if gated else "within"
    lines = ["", f"{comp['reference']} vs {comp['candidate']}: {verdict}  "
                 f"({ok}/{len(rows)} outputs {within} atol={rows[0]['atol']:g} rtol={rows[0]['rtol']:g})"
             if rows else f"{comp['reference']} vs {comp['candidate']}: {verdict} (no outputs)"]
    if comp["first_divergence"]:
        lines.append(f"  first divergence: {comp['first_divergence']}")
    lines.append(f"  {'output':<{w}} {'shape':<18} {'max abs':>8} {'max rel':>8} {'mean abs':>8} "
                 f"{'cosine':>9} {'req atol':>8} {'mismatched':>14}  verdict")
    for r in rows:
        shape_s = "x".join(map(str, r["shape"] or []))
        mism = f"{r.get('mismatched', 0)}/{r.get('total', 0)}"
        cos = "-" if r.get("cosine") is None else f"{r['cosine']:.6f}"
        lines.append(f"  {r['name']:<{w}} {shape_s:<18} {num(r.get('max_abs_diff'), SHORT):>8} "
                     f"{num(r.get('max_rel_diff'), SHORT):>8} {num(r.get('mean_abs_diff'), SHORT):>8} {cos:>9} "
                     f"{num(r.get('required_atol'), SHORT):>8} {mism:>14}  {'PASS' if r['passed'] else 'FAIL'}")
    lines += [f"  {r['name']}: {agreement_shown(r, verbose)}" for r in rows if agreement_shown(r, verbose)]
    lines += [f"  {r['name']}: {oracle_shown(r, verbose)}" for r in rows if oracle_shown(r, verbose)]
    if noise_hint(comp):
        lines.append(f"  note: {noise_hint(comp)}")
    lines += [f"  {r['name']}: {mismatch_message(r)}" for r in rows
              if not r["passed"] and (verbose or r["name"] == comp["first_divergence"])]
    skipped = comp.get("not_compared") or []
    for side in dict.fromkeys(item["missing_in"] for item in skipped):
        names = [item["name"] for item in skipped if item["missing_in"] == side]
        lines.append(f"  not compared (no {side} output): {', '.join(names)}")
    return lines


def render_diagnosis(diag: dict) -> list[str]:
    """The --explain narrative per pair, then its per-layer table."""
    lines = ["diagnosis"]
    for pair in diag.get("pairs", []):
        lines.append("")
        lines += [f"  {line}" for line in pair.get("narrative", [])]
        layers = pair.get("layers") or []
        if layers and pair.get("first_divergence"):
            lines.append(f"    {'layer':<22} {'received':>9} {'passed on':>9} {'growth':>8} {'attention':>9}")
            for r in layers:
                growth = "-" if r.get("growth") is None else f"x{r['growth']:.3g}"
                mark = "  <- introduces the drift" if r.get("introduces") else ""
                lines.append(f"    {r['layer']:<22} {num(r.get('received'), SHORT):>9} "
                             f"{num(r.get('passed_on'), SHORT):>9} "
                             f"{growth:>8} {num(r.get('attention'), SHORT):>9}{mark}")
    return lines


def render_conversion(results: dict, *, verbose: bool = False) -> str:
    """`parity convert`: what was written, the weights comparison, then the output check."""
    conv = results["conversion"]
    lines = [f"parity convert {conv['source']} -> {conv['output']}",
             f"  {conv['from']} ({conv['source_weights']}) -> {conv['to']} ({conv['output_weights']})"
             + (f" via {conv['converted_via']}" if conv.get("converted_via") else "")
             + (", existing output verified" if conv.get("verify_only") else
                f", written in {conv['seconds']['convert']:.1f}s: {', '.join(conv['written'] or [])}")]
    for key in ("missing", "unexpected", "mismatched"):
        names = (conv.get("load") or {}).get(key) or []
        if names:
            lines.append(f"  converter: {key} weights: {', '.join(names[:6])}" + (" ..." if len(names) > 6 else ""))
    for note in (conv.get("load") or {}).get("notes", []):
        lines.append(f"  note: {note}")
    w = conv.get("weights")
    if w is None:
        lines.append("  weights: not compared (a framework failed, see below)")
    else:
        c = w["counts"]
        lines.append(f"  weights: {'PASS' if w['passed'] else 'FAIL'}  {w['identical']}/{w['reference_count']} "
                     f"tensors identical, {w['within_tolerance']} within atol={w['atol']:g}, "
                     f"{c['differing']} differing, {c['missing']} missing, {c['unexpected']} unexpected, "
                     f"{c['shape_mismatch']} reshaped (max abs diff {num(w['max_abs_diff'], SHORT)})")
        for d in w["differing"][: None if verbose else 5]:
            lines.append(f"    differing  {d['name']} {'x'.join(map(str, d['shape']))}: max abs diff "
                         f"{num(d['max_abs_diff'], SHORT)}, {d['mismatched']}/{d['total']} elements")
        for key in ("missing", "unexpected"):
            names = w[key][: None if verbose else 5]
            if names:
                lines.append(f"    {key:<10} {', '.join(names)}" + (" ..." if c[key] > len(names) else ""))
        for d in w["shape_mismatch"][: None if verbose else 5]:
            lines.append(f"    reshaped   {d['name']}: {d['reference']} -> {d['candidate']}")
    lines += ["", *render(results, verbose=verbose).split("\n")]  # already one clean line each
    return "\n".join(clean(line) for line in lines)
