"""Console summary, rendered from a results dict (never from live objects)."""

from __future__ import annotations


def _num(x) -> str:
    return "-" if x is None else f"{x:.1e}"


def _source(fw: dict) -> str:
    if not fw.get("weights"):
        return "-"
    if fw.get("converted_from"):
        via = f" via {fw['via']}" if fw.get("via") else ""
        return f"{fw['weights']} (from {fw['converted_from']}{via})"
    return f"{fw['weights']} (native)"


def mismatch_message(row: dict) -> str:
    """torch.testing-style: 'Mismatched elements: 2 / 3 (66.7%) ...'."""
    if row.get("error"):
        return row["error"]
    parts = [f"Mismatched elements: {row['mismatched']} / {row['total']} ({100 * row['mismatched_share']:.1f}%)"]
    nf = row.get("nonfinite") or {}
    if nf.get("reference") or nf.get("candidate"):
        parts.append(f"NaN/Inf: {nf.get('reference', 0)} in reference, {nf.get('candidate', 0)} in candidate")
    if row.get("max_abs_diff") is not None:
        idx = tuple(row["worst_index"] or ())
        parts.append(f"Greatest absolute difference: {row['max_abs_diff']:.3g} at index {idx} "
                     f"(up to {row['atol']:g} allowed)")
        parts.append(f"Greatest relative difference: {row['max_rel_diff']:.3g} (up to {row['rtol']:g} allowed)")
    return "; ".join(parts)


def render(results: dict, *, verbose: bool = False) -> str:
    ck = results["checkpoint"]
    inp = results["inputs"]
    shape = inp["shapes"].get("input_ids") or next(iter(inp["shapes"].values()), [])
    keys = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in inp["shapes"].items())
    lines = [f"parity check {ck['path']}",
             f"  model_type {ck['model_type']}, task {results['task']}, inputs {inp['source']} "
             f"{shape} ({inp['padded_positions']} padded positions excluded)", f"  batch: {keys}", ""]
    lines.append(f"  {'framework':<9} {'status':<11} {'class':<34} {'weights':<40} {'device':<7} load     run")
    for name, fw in results["frameworks"].items():
        sec = fw.get("seconds") or {}
        load = f"{sec['load']:.1f}s" if "load" in sec else "-"
        run = f"{sec['run']:.2f}s" if "run" in sec else "-"
        lines.append(f"  {name:<9} {fw['status']:<11} {str(fw.get('class_name') or '-'):<34} "
                     f"{_source(fw):<40} {str(fw.get('device') or '-'):<7} {load:<8} {run}")
        if fw.get("error"):
            lines.append(f"  {'':<9} {fw['error']}")
        load_info = fw.get("load") or {}
        for key in ("missing", "mismatched"):
            if load_info.get(key):
                lines.append(f"  {'':<9} {key} weights: {', '.join(load_info[key][:6])}"
                             + (" ..." if len(load_info[key]) > 6 else ""))
        for note in load_info.get("notes", []):
            lines.append(f"  {'':<9} note: {note}")
    for comp in results["comparisons"]:
        rows = comp["outputs"]
        w = max([22] + [len(r["name"]) for r in rows])
        ok = sum(r["passed"] for r in rows)
        verdict = "PASS" if comp["passed"] else "FAIL"
        lines += ["", f"{comp['reference']} vs {comp['candidate']}: {verdict}  "
                      f"({ok}/{len(rows)} outputs within atol={rows[0]['atol']:g} rtol={rows[0]['rtol']:g})"
                  if rows else f"{comp['reference']} vs {comp['candidate']}: {verdict} (no outputs)"]
        if comp["first_divergence"]:
            lines.append(f"  first divergence: {comp['first_divergence']}")
        lines.append(f"  {'output':<{w}} {'shape':<18} {'max abs':>8} {'max rel':>8} {'mean abs':>8} "
                     f"{'cosine':>9} {'req atol':>8} {'mismatched':>14}  verdict")
        for r in rows:
            shape_s = "x".join(map(str, r["shape"] or []))
            mism = f"{r.get('mismatched', 0)}/{r.get('total', 0)}"
            cos = "-" if r.get("cosine") is None else f"{r['cosine']:.6f}"
            lines.append(f"  {r['name']:<{w}} {shape_s:<18} {_num(r.get('max_abs_diff')):>8} "
                         f"{_num(r.get('max_rel_diff')):>8} {_num(r.get('mean_abs_diff')):>8} {cos:>9} "
                         f"{_num(r.get('required_atol')):>8} {mism:>14}  {'PASS' if r['passed'] else 'FAIL'}")
        for r in rows:
            if not r["passed"] and (verbose or r["name"] == comp["first_divergence"]):
                lines.append(f"  {r['name']}: {mismatch_message(r)}")
        skipped = comp.get("not_compared") or []
        for side in dict.fromkeys(item["missing_in"] for item in skipped):
            names = [item["name"] for item in skipped if item["missing_in"] == side]
            lines.append(f"  not compared (no {side} output): {', '.join(names)}")
    code = results["exit_code"]
    meaning = {0: "all comparisons pass", 1: "parity mismatch", 3: "a framework could not load or run"}
    lines += ["", f"verdict: {'PASS' if results['passed'] else 'FAIL'} (exit {code}: {meaning.get(code, '')})"]
    return "\n".join(lines)
