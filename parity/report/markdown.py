"""report.md: verdict, pair x output table, first divergence; sized for a PR comment or CI summary."""

from __future__ import annotations

from parity.contracts import registry
from parity.report.behaviour import agreement_shown, generation_lines, noise_hint, oracle_shown, pipeline_lines
from parity.report.common import diagnoses, environments, labels_line, pair_name, source, stand_in, verdict_line
from parity.numerics.format import num
from parity.report.console import mismatch_message

LIMIT = 64 * 1024      # GitHub job summaries and PR comments cap around 64 KiB / 65536 characters
FOLD_ROWS = 12         # longer tables go inside <details>


def cell(text) -> str:
    """Escape for a Markdown table cell: no HTML, no pipes, no line breaks from checkpoint strings."""
    s = str(text)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "'")):
        s = s.replace(a, b)
    return " ".join(s.split())


def _table(head: list, rows: list) -> list:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _folded(summary: str, lines: list, n_rows: int) -> list:
    if n_rows <= FOLD_ROWS:
        return lines + [""]
    return [f"<details><summary>{summary}</summary>", "", *lines, "", "</details>", ""]


def render(results: dict, *, limit: int = LIMIT) -> str:
    ck = results["checkpoint"]
    comps = results.get("comparisons", [])
    icon = "✅" if results.get("passed") else "❌"
    lines = [f"## {icon} parity: {verdict_line(results)}", "",
             f"`{cell(ck.get('path'))}` · model_type `{cell(ck.get('model_type'))}` · task `{cell(results.get('task'))}`"
             f" · created {cell(results.get('created', '-'))}"
             + (f" · labels {cell(labels_line(ck))}" if labels_line(ck) else ""), ""]
    for comp in comps:
        rows = comp["outputs"]
        ok = sum(r["passed"] for r in rows)
        tol = f" within atol={rows[0]['atol']:g} rtol={rows[0]['rtol']:g}" if rows else ""
        line = f"- **{pair_name(comp)}: {'PASS' if comp['passed'] else 'FAIL'}** ({ok}/{len(rows)} outputs{tol})"
        if comp.get("first_divergence"):
            first = next(r for r in rows if r["name"] == comp["first_divergence"])
            line += f"; first divergence **`{cell(first['name'])}`**: {cell(mismatch_message(first))}"
        lines.append(line)
    bad_fw = [(n, f) for n, f in results["frameworks"].items() if f.get("status") != "ok"]
    for name, fw in bad_fw:
        lines.append(f"- **{cell(name)}: {cell(fw.get('status'))}**: {cell(fw.get('error') or '')}")
    if stand_in(results):
        lines.append(f"- {cell(stand_in(results))}")
    lines.append("")

    # Pair x output: one row per output, one column per pair.
    names = list(dict.fromkeys(r["name"] for c in comps for r in c["outputs"]))
    if names:
        by_pair = [{r["name"]: r for r in c["outputs"]} for c in comps]
        head = ["output"] + [f"{cell(pair_name(c))} max abs" for c in comps]
        body = []
        for name in names:
            cells = []
            for rows in by_pair:
                r = rows.get(name)
                cells.append("-" if r is None else
                             f"{'✅' if r['passed'] else '❌'} {r.get('error') and cell(r['error']) or num(r.get('max_abs_diff'))}")
            body.append([f"`{cell(name)}`"] + cells)
        lines += _folded(f"{len(names)} outputs per pair", _table(head, body), len(body))

    fw_rows = [[cell(n), cell(f.get("status")), f"`{cell(f.get('class_name') or '-')}`", cell(source(f)),
                cell(f.get("device") or "-")] for n, f in results["frameworks"].items()]
    lines += _folded("frameworks", _table(["framework", "status", "class", "weights", "device"], fw_rows),
                     len(fw_rows))
    agree = [f"- {cell(pair_name(c))} `{cell(r['name'])}`: {cell(agreement_shown(r))}" for c in comps
             for r in c["outputs"] if agreement_shown(r)]
    agree += [f"- {cell(pair_name(c))} `{cell(r['name'])}`: {cell(oracle_shown(r))}" for c in comps
              for r in c["outputs"] if oracle_shown(r)]
    agree += [f"- {cell(pair_name(c))}: {cell(noise_hint(c))}" for c in comps if noise_hint(c)]
    lines += agree + ([""] if agree else [])
    for section in (generation_lines(results), pipeline_lines(results)):
        if section:
            lines += [f"**{cell(section[0])}**", "", *[f"- {cell(line.strip())}" for line in section[1:]], ""]
    for title, diag in diagnoses(results):
        narrative = diag.get("narrative") or [str(diag)]
        lines += [f"**Diagnosis ({cell(title)})**: {cell(narrative[0])}", ""]
        if len(narrative) > 1:
            lines += _folded("diagnosis", [f"- {cell(line.strip())}" for line in narrative[1:]],
                             len(narrative) - 1)
    for line in environments(results):
        lines += [f"<sub>environment {cell(line)}</sub>", ""]
    v = results.get("environment", {}).get("versions", {})
    lines.append("<sub>" + cell(", ".join(f"{k} {v[k]}" for k in registry.shown_versions() if v.get(k))) + "</sub>")
    text = "\n".join(lines) + "\n"
    if len(text.encode("utf-8")) > limit:
        # Never exceed the host's cap: keep the verdict and summary, drop the tables.
        head = text.encode("utf-8")[: limit - 400].decode("utf-8", "ignore").rsplit("\n", 1)[0]
        still_open = head.count("<details>") - head.count("</details>")
        text = head + "\n" + "\n\n</details>" * still_open + \
            f"\n\n_(report truncated to {limit // 1024} KiB; see report.html)_\n"
    return text

