"""report.md: the verdict and every verdict behind it (forward, generation, pipeline, tokenizer pairs), the
pair x output table, first divergence, a compact generation table; sized for a PR comment or CI summary."""

from __future__ import annotations

from parity.contracts import registry
from parity.report.behaviour import (agreement_shown, first_parted, generation_lines, noise_hint, oracle_shown,
                                     pipeline_lines, prompt, reason_sentence, settings)
from parity.report.common import (diagnoses, environments, labels_line, pair_name, source, stand_in, verdict_line,
                                  verdicts)
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


def _summary(results: dict) -> list:
    """Every verdict that counts toward the exit code (common.verdicts): forward pairs with their first
    divergence, then generation, pipeline and tokenizer pairs; frameworks that did not run; a stand-in."""
    lines = []
    for comp in results.get("comparisons", []):
        rows = comp["outputs"]
        ok = sum(r["passed"] for r in rows)
        tol = f" within atol={rows[0]['atol']:g} rtol={rows[0]['rtol']:g}" if rows else ""
        line = f"- **{cell(pair_name(comp))}: {'PASS' if comp['passed'] else 'FAIL'}** ({ok}/{len(rows)} outputs{tol})"
        if comp.get("first_divergence"):
            first = next(r for r in rows if r["name"] == comp["first_divergence"])
            line += f"; first divergence **`{cell(first['name'])}`**: {cell(mismatch_message(first))}"
        lines.append(line)
    lines += [f"- **{cell(v['pair'])} {v['kind']}: {v['verdict']}**: {cell(v['detail'])}"
              for v in verdicts(results) if v["kind"] != "forward"]
    for name, fw in results["frameworks"].items():
        if fw.get("status") != "ok":
            lines.append(f"- **{cell(name)}: {cell(fw.get('status'))}**: {cell(fw.get('error') or '')}")
    if stand_in(results):
        lines.append(f"- {cell(stand_in(results))}")
    return lines + [""]


def _outputs_table(comps: list) -> list:
    """Pair x output: one row per output, one column per pair."""
    names = list(dict.fromkeys(r["name"] for c in comps for r in c["outputs"]))
    if not names:
        return []
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
    return _folded(f"{len(names)} outputs per pair", _table(head, body), len(body))


def _top(reason: dict, fw: str, k: int = 3) -> str:
    """``26 (4.6663), 170 (-3.3e-06)``: a side's best candidates at the step, the others as gaps below the best."""
    cands = ((reason.get("top_candidates") or {}).get(fw) or [])[:k]
    if not cands:
        return "-"
    best = cands[0].get("score")
    return ", ".join(f"{cell(c.get('token'))} ({num(c.get('score'), '.5g')})" if i == 0 or best is None
                     or c.get("score") is None else f"{cell(c.get('token'))} ({c['score'] - best:+.2g})"
                     for i, c in enumerate(cands))


def _generation(results: dict) -> list:
    """Compact generation table: per pair its first diverging row (the reference's and the candidate's
    continuation, the tokens at that step, both sides' top 3 there, the reason and the settings that differ)."""
    entries = results.get("generation")
    if entries is None:
        return []
    head = generation_lines(results)[0]
    rows = []
    for g in entries:
        ref, cand = g["reference"], g["candidate"]
        first = first_parted(g)
        if first is None:
            rows.append([cell(pair_name(g)), "PASS" if g.get("passed") else "FAIL", "-", "-", "-", "-", "-",
                         cell(g.get("error") or g.get("summary") or "")])
            continue
        reason, step, text = first.get("reason") or {}, first["first_divergence_step"], first.get("text") or ["-", "-"]
        toks = [first["tokens"][0][step], first["tokens"][1][step]]
        why = reason_sentence(reason, ref, cand) + "".join(
            f"; {k}: {ref} {a}, {cand} {b}" + (f" ({note})" if note else "") for k, a, b, note in settings(g, reason))
        rows.append([cell(pair_name(g)), "FAIL", cell(f"{first['row']} / {step}"),
                     cell(prompt(results, first["row"]) or "-"),
                     f"{cell(ref)}: {cell(repr(text[0]))}<br>{cell(cand)}: {cell(repr(text[1]))}",
                     f"{cell(ref)} {cell(toks[0])}, {cell(cand)} {cell(toks[1])}",
                     f"{cell(ref)}: {_top(reason, ref)}<br>{cell(cand)}: {_top(reason, cand)}", cell(why)])
    table = _table(["pair", "verdict", "row / step", "prompt", "continuations", "tokens at the step",
                    "top 3 there (score, gap)", "why"], rows)
    return [f"**{cell(head)}** (first diverging row of each pair)", "", *table, ""]


def _loading(results: dict) -> list[str]:
    """Loading settings, reduced-precision verdicts and tokenizer pairs (parity.report.loading)."""
    from parity.report.loading import sections

    lines = []
    for title, section in sections(results):
        lines += [f"**{cell(title)}**", "", *[f"- {cell(line.strip())}" for line in section], ""]
    return lines


def render(results: dict, *, limit: int = LIMIT) -> str:
    ck = results["checkpoint"]
    comps = results.get("comparisons", [])
    icon = "✅" if results.get("passed") else "❌"
    lines = [f"## {icon} parity: {verdict_line(results)}", "",
             f"`{cell(ck.get('path'))}` · model_type `{cell(ck.get('model_type'))}` · task `{cell(results.get('task'))}`"
             f" · created {cell(results.get('created', '-'))}"
             + (f" · labels {cell(labels_line(ck))}" if labels_line(ck) else ""), ""]
    lines += _summary(results) + _outputs_table(comps)
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
    lines += _generation(results)
    section = pipeline_lines(results)
    if section:
        lines += [f"**{cell(section[0])}**", "", *[f"- {cell(line.strip())}" for line in section[1:]], ""]
    lines += _loading(results)
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
    return _capped("\n".join(lines) + "\n", limit)


def _capped(text: str, limit: int) -> str:
    """Never exceed the host's cap: keep the verdict and summary, drop the tables."""
    if len(text.encode("utf-8")) <= limit:
        return text
    head = text.encode("utf-8")[: limit - 400].decode("utf-8", "ignore").rsplit("\n", 1)[0]
    still_open = head.count("<details>") - head.count("</details>")
    return head + "\n" + "\n\n</details>" * still_open + \
        f"\n\n_(report truncated to {limit // 1024} KiB; see report.html)_\n"
