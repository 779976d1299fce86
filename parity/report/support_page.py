"""SUPPORT.md: verdict and worst difference per (model type, task, pair), rendered from
results.json files only. Failing pairs stay in the table with their first divergence."""

from __future__ import annotations

import json
from pathlib import Path

from parity.contracts import registry


def load_all(folder) -> list[dict]:
    """Every results.json under ``folder``, sorted by model type then task."""
    found = []
    for path in sorted(Path(folder).rglob("results.json")):
        found.append(json.loads(path.read_text(encoding="utf-8")))
    return sorted(found, key=lambda r: (r["checkpoint"]["model_type"], r["task"]))


def _worst(comp: dict) -> tuple[float | None, str | None]:
    rows = [r for r in comp["outputs"] if r.get("max_abs_diff") is not None]
    if not rows:
        return None, None
    row = max(rows, key=lambda r: r["max_abs_diff"])
    return row["max_abs_diff"], row["name"]


def _pair_cell(res: dict, ref: str, cand: str) -> str:
    fw = res["frameworks"].get(cand)
    if fw is None:
        return "not run"
    if fw["status"] != "ok":
        return f"{fw['status'].upper()}"
    comp = next((c for c in res["comparisons"] if c["reference"] == ref and c["candidate"] == cand), None)
    if comp is None:
        return "not compared"
    worst, _ = _worst(comp)
    verdict = "PASS" if comp["passed"] else "**FAIL**"
    n = len(comp["outputs"])
    return f"{verdict} {worst:.1e} ({n} outputs)" if worst is not None else f"{verdict} ({n} outputs)"


def _failure_lines(res: dict) -> list[str]:
    out = []
    for name, fw in res["frameworks"].items():
        if fw["status"] not in ("ok",):
            out.append(f"  - {name}: {fw['status']}: {fw.get('error')}")
    for comp in res["comparisons"]:
        if comp["passed"]:
            continue
        row = next(r for r in comp["outputs"] if r["name"] == comp["first_divergence"])
        if row.get("error"):
            detail = row["error"]
        else:
            detail = (f"max abs diff {row['max_abs_diff']:.3g} at {tuple(row['worst_index'] or ())}, "
                      f"{row['mismatched']}/{row['total']} elements outside atol={row['atol']:g} "
                      f"rtol={row['rtol']:g}")
        failing = sum(not r["passed"] for r in comp["outputs"])
        out.append(f"  - {comp['reference']} vs {comp['candidate']}: first divergence `{comp['first_divergence']}` "
                   f"({detail}); {failing}/{len(comp['outputs'])} outputs fail")
    return out


def render(results: list[dict], *, notes: dict | None = None, command: str | None = None,
           reference: str = registry.KEYS[0]) -> str:
    """Markdown for SUPPORT.md. ``notes``: {"model_type/task": what the failure is} (findings)."""
    notes = notes or {}
    pairs = [(reference, fw) for fw in registry.KEYS if fw != reference]
    env = results[0]["environment"]["versions"] if results else {}
    passed = sum(r["passed"] for r in results)
    lines = ["# Support", "",
             "Generated from a full run of the tiny-config matrix: one random tiny model per (model type, task), "
             "built from fixed seeds by `fixtures/matrix.py` (PyTorch weights; TF and Flax load them "
             f"`from_pt`), checked by `parity check` in {registry.spoken()} with the default tolerances "
             "(atol=1e-5, rtol=1e-5; padded positions excluded). Do not edit by hand.", ""]
    if command:
        lines += [f"Regenerate: `{command}`", ""]
    if env:
        lines += ["Stack: " + ", ".join(f"{k} {env[k]}" for k in registry.shown_versions() if env.get(k)), ""]
    lines += [f"{passed} of {len(results)} cases pass in every pair. Cells: verdict, the largest absolute "
              "difference over all compared outputs, and how many outputs were compared "
              "(every hidden state, attention map, cache tensor and head output).", "",
              "| model type | task | inputs | " + " | ".join(f"{a} vs {b}" for a, b in pairs) + " |",
              "|---|---|---|" + "---|" * len(pairs)]
    for res in results:
        mt, task = res["checkpoint"]["model_type"], res["task"]
        inp = res["inputs"]
        kind = inp.get("modality", "text") + (" + decoder ids" if inp.get("seq2seq") else "")
        cells = [_pair_cell(res, a, b) for a, b in pairs]
        lines.append(f"| {mt} | {task} | {kind} | " + " | ".join(cells) + " |")
    failures = [r for r in results if not r["passed"]]
    lines += ["", "## Findings", ""]
    if not failures:
        lines.append("None: every case passes.")
    explained = {}
    for res in failures:
        key = f"{res['checkpoint']['model_type']}/{res['task']}"
        lines.append(f"- **{key}**")
        lines += _failure_lines(res)
        if key in notes:
            first = explained.setdefault(notes[key], key)
            lines.append(f"  - cause: {notes[key]}" if first == key else f"  - cause: the same as {first}")
    skipped = {}
    for res in results:
        for comp in res["comparisons"]:
            for item in comp.get("not_compared", []):
                key = (item["missing_in"], item["name"].split(".", 1)[0], item.get("reason") or "")
                skipped.setdefault(key, set()).add(res["checkpoint"]["model_type"])
    if skipped:
        lines += ["", "## Not compared", ""]
    for (fw, field, reason), types in sorted(skipped.items()):
        if field == "past_key_values":  # compare.py's reason, with why where the framework says
            why = registry.get(fw).no_cache_why if fw in registry.BY_KEY else ""
            reason = f"{fw} returns no cache from a plain forward pass" + (f" ({why})" if why else "")
        lines.append(f"- `{field}.*` of {', '.join(sorted(types))}: {reason or fw + ' does not produce them'}; "
                     "listed under `not_compared` in results.json, never counted as a pass.")
    general = notes.get("*")
    if general:
        lines += ["", "## Notes", "", general]
    return "\n".join(lines) + "\n"
