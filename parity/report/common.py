"""Facts every report shows, read from a results dict (never from live objects)."""

from __future__ import annotations

import re

from parity.contracts.outputs import base, layer_of
from parity.report.behaviour import generation_detail

EXIT_MEANING = {0: "all comparisons pass", 1: "parity mismatch", 2: "bad input or usage",
                3: "a framework could not load or run"}


def verdict(results: dict) -> str:
    return "PASS" if results.get("passed") else "FAIL"


def verdict_line(results: dict) -> str:
    code = results.get("exit_code")
    line = f"{verdict(results)} (exit {code}: {EXIT_MEANING.get(code, 'unknown')})"
    return f"{line}: {results['nothing_compared']}" if results.get("nothing_compared") else line


def stand_in(results: dict) -> str | None:
    """One line when the requested reference could not be used (results.json ``reference_used``)."""
    used = results.get("reference_used") or {}
    if not used.get("reason"):
        return None
    if used.get("framework"):
        return (f"reference: {used['framework']} stands in for {used['requested']} ({used['reason']}); "
                f"the pairs below judge the other frameworks against {used['framework']}")
    return f"reference: {used['requested']} could not be used ({used['reason']}) and too few others ran to compare"


def environments(results: dict) -> list[str]:
    """One line per Python environment the workers ran in, when a check used more than parity's own
    (``frameworks.<fw>.environment``): its name, frameworks, interpreter and headline versions."""
    from parity.contracts import registry

    envs: dict = {}
    for key, fw in (results.get("frameworks") or {}).items():
        env = fw.get("environment")
        if env:
            envs.setdefault((env.get("name"), env.get("python")), (env, []))[1].append(key)
    if not any(name for name, _ in envs):
        return []
    lines = []
    for (name, python), (env, keys) in envs.items():
        v = env.get("versions") or {}
        shown = ", ".join(f"{k} {v[k]}" for k in ("python",) + registry.shown_versions() if v.get(k))
        lines.append(f"{name or 'local'} ({', '.join(keys)}): {python}; {shown}")
    return lines


def pair_name(comp: dict) -> str:
    return f"{comp['reference']} vs {comp['candidate']}"


def groups(outputs: list) -> dict:
    """Rows grouped by ModelOutput field (hidden_states, cross_attentions, logits, ...), in first-seen
    (model) order."""
    out: dict = {}
    for row in outputs:
        out.setdefault(base(row["name"]), []).append(row)
    return out


def layer_series(outputs: list) -> dict:
    """{"hidden_states": [(layer, max_abs, mean_abs), ...], "attentions": [...]} for the layer chart."""
    series: dict = {"hidden_states": [], "attentions": []}
    for row in outputs:
        layer = layer_of(row["name"])
        if layer is not None and layer[0] == "":  # the main stack only
            series[layer[1]].append((layer[2], row.get("max_abs_diff"), row.get("mean_abs_diff")))
    return {k: sorted(v) for k, v in series.items() if v}


def worst_row(outputs: list) -> dict | None:
    rows = [r for r in outputs if r.get("max_abs_diff") is not None]
    return max(rows, key=lambda r: r["max_abs_diff"]) if rows else None


def source(fw: dict, *, cache: bool = False) -> str:
    """Where a framework's weights came from; ``cache``: say when the conversion came from the cache."""
    if not fw.get("weights"):
        return "-"
    if fw.get("converted_from"):
        via = f" via {fw['via']}" if fw.get("via") else ""
        cached = ", cached" if cache and fw.get("cache") == "hit" else ""
        return f"{fw['weights']} (from {fw['converted_from']}{via}{cached})"
    return f"{fw['weights']} (native)"




def shape(row: dict) -> str:
    return "x".join(map(str, row.get("shape") or [])) or "-"


def diagnoses(results: dict) -> list:
    """(title, diagnosis) per pair from ``--explain`` (results["diagnosis"]["pairs"]); [] when absent."""
    found = []
    diag = results.get("diagnosis") or {}
    for pair in diag.get("pairs", []):
        found.append((f"{pair.get('reference')} vs {pair.get('candidate')}", pair))
    for comp in results.get("comparisons", []):
        if comp.get("diagnosis"):
            found.append((pair_name(comp), comp["diagnosis"]))
    return found


def labels_line(ck: dict) -> str | None:
    """``0 LABEL_0, 1 LABEL_1, ...`` from the checkpoint's id2label (raw: each format escapes it)."""
    labels = ck.get("labels")
    return ", ".join(f"{k} {v}" for k, v in labels.items()) if labels else None


def anchor(kind: str, index: int, entry: dict) -> str:
    """The HTML id of one verdict's section: the kind and position make it unique, the pair makes it readable
    (framework keys such as ``pt@v5`` or ``baseline:pt`` reduced to letters, digits and dashes)."""
    pair = f"{entry.get('reference')}-{entry.get('candidate')}"
    return f"{kind}-{index}-" + re.sub(r"[^A-Za-z0-9]+", "-", pair).strip("-")


def _entry_verdict(entry: dict) -> str:
    return "SKIPPED" if entry.get("skipped") else ("PASS" if entry.get("passed") else "FAIL")


def _forward_detail(comp: dict) -> str:
    rows = comp.get("outputs") or []
    ok = f"{sum(r['passed'] for r in rows)}/{len(rows)} outputs within tolerance"
    return f"{ok}; first divergence {comp['first_divergence']}" if comp.get("first_divergence") else ok


def verdicts(results: dict) -> list[dict]:
    """Every verdict that counts toward the exit code, in report order: forward pairs, then generation,
    pipeline and tokenizer pairs (``tokenizers`` rendered generically: reference, candidate, passed). Each is
    ``{kind, pair, verdict, detail, anchor}``; the HTML and Markdown summaries are this list."""
    out = [dict(kind="forward", pair=pair_name(c), verdict="PASS" if c["passed"] else "FAIL",
                detail=_forward_detail(c), anchor=anchor("forward", i, c))
           for i, c in enumerate(results.get("comparisons") or [])]
    parts = (("generation", results.get("generation"), generation_detail),
             ("pipeline", results.get("pipeline"), lambda e: e.get("summary") or e.get("error") or ""),
             ("tokenizers", results.get("tokenizers"), lambda e: e.get("summary") or e.get("error") or ""))
    for kind, entries, detail in parts:
        entries = [x for x in entries if isinstance(x, dict)] if isinstance(entries, list) else []
        out += [dict(kind=kind, pair=f"{entry.get('reference')} vs {entry.get('candidate')}",
                     verdict=_entry_verdict(entry), detail=str(detail(entry)), anchor=anchor(kind, i, entry))
                for i, entry in enumerate(entries)]
    return out
