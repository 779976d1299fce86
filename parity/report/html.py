"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network).

Verdict first, with every verdict that counts toward the exit code (forward,
generation, pipeline and tokenizer pairs), each linked to its section; then per
pair: the error per layer (log scale, tolerance line), a batch x token heat map
of the worst output, the full output table; the generation and pipeline tables
(html_behaviour.py); the load report per framework, the diagnosis when present,
the inputs and the environment. Every string from results.json is escaped, and
nothing is wider than a 1280 px window: long values wrap or scroll in their box.
"""

from __future__ import annotations

import math
import re

from parity.report.behaviour import agreement_shown, noise_hint, oracle_shown
from parity.report.common import (anchor, diagnoses, environments, labels_line, layer_series, pair_name, shape, source,
                                  stand_in, verdict, verdict_line, verdicts)
from parity.report.html_behaviour import badge, e, generation_section, pipeline_section
from parity.numerics.format import num
from parity.report.console import mismatch_message

CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--mute:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0 auto;
 max-width:1100px;padding:16px 20px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
.verdict{display:flex;gap:14px;align-items:center;padding:12px 16px;border-radius:8px;margin:8px 0 12px;
 border:2px solid var(--ok);background:#dafbe1}
.verdict.fail{border-color:var(--bad);background:#ffebe9}
.badge{font-weight:700;font-size:22px;color:var(--ok)}.fail .badge{color:var(--bad)}
.pass{color:var(--ok);font-weight:600}.failtxt{color:var(--bad);font-weight:600}
.meta{color:var(--mute)}code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px;width:100%}
th,td{border:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top}
th{background:var(--bg)}td.n{text-align:right;white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace}
tr.bad td{background:#fff5f5}
.scroll{overflow-x:auto}table.metrics{font-size:11.5px}table.metrics td,table.metrics th{padding:2px 4px}
.charts{display:flex;flex-wrap:wrap;gap:18px}.charts figure{margin:0;flex:0 1 520px;min-width:0}
.charts figure.wide{flex:1 1 100%}
figcaption{color:var(--mute);font-size:12px}
svg{max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#1f2328}
ul.tight{margin:4px 0;padding-left:20px}
.first{background:#fff8c5;padding:6px 10px;border-radius:6px;border:1px solid #d4a72c}
.skiptxt{color:var(--mute);font-weight:600}.small{font-size:11.5px}
.wrap,.wrap td,.wrap th{overflow-wrap:anywhere}pre{white-space:pre-wrap;overflow-wrap:anywhere}
.wrap th,.wrap td.n{overflow-wrap:normal}
.verdict>div{flex:1;min-width:0}
table.verdicts{background:#fff;margin:6px 0 2px}table.verdicts td:nth-child(-n+3){white-space:nowrap}
section.behaviour{margin:0 0 18px}
.clamp{display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden}
table.gen td.txt,table.pipe td.txt{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.toks{display:flex;flex-wrap:wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin-bottom:2px}
.tok{display:flex;flex-direction:column;align-items:flex-end;padding:0 3px;border:1px solid transparent}
.tok .s{color:var(--mute);font-size:10.5px}.tok.legend{align-items:flex-start;color:var(--mute)}
.tok.parts{background:#fff8c5;border-color:#d4a72c;border-radius:4px;font-weight:700;color:var(--bad)}
.tok.parts .s{color:#1f2328}.tok.after{color:#8c959f}
table.top{width:auto;margin:4px 0 0;font-size:11.5px}
table.top td,table.top th{padding:1px 5px;white-space:nowrap;overflow-wrap:normal}
td.pick{background:#fff8c5;font-weight:700}td.pick-other{outline:2px dashed #d4a72c;outline-offset:-3px}
table.gen col.row{width:34px}table.gen col.txt{width:11%}table.gen col.toks{width:33%}
tr.flip td{background:#ffebe9}tr.flip td:last-child{color:var(--bad);font-weight:600}
table.settings{width:auto}
table.load td{overflow-wrap:anywhere}table.load td.cls{overflow-wrap:normal}table.load td:last-child{min-width:200px}
@media print{body{max-width:none;padding:0}.pair{break-inside:avoid-page}h2{break-after:avoid}
 .scroll{overflow:visible}a{color:inherit;text-decoration:none}}
"""

# Viridis stops: perceptually even and readable when printed in grey.
VIRIDIS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]


def color(t: float) -> str:
    t = min(max(t, 0.0), 1.0) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(VIRIDIS[i], VIRIDIS[i + 1]))
    return f"#{r:02x}{g:02x}{b:02x}"


def _log_range(values: list) -> tuple[float, float]:
    pos = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not pos:
        return -10.0, 0.0
    lo, hi = math.floor(math.log10(min(pos))), math.ceil(math.log10(max(pos)))
    return float(lo), float(hi if hi > lo else lo + 1)


def layer_chart(comp: dict) -> str:
    """Max and mean abs diff per layer for hidden_states.N and attentions.N, log y, atol line."""
    series = layer_series(comp["outputs"])
    if not series:
        return ""
    atol = comp["outputs"][0]["atol"]
    vals = [v for s in series.values() for _, mx, mn in s for v in (mx, mn)] + [atol]
    lo, hi = _log_range(vals)
    layers = sorted({n for s in series.values() for n, _, _ in s})
    W, H, L, R, T, B = 520, 250, 58, 104, 12, 34
    pw, ph = W - L - R, H - T - B
    x = lambda n: L + (pw * (n - layers[0]) / max(layers[-1] - layers[0], 1) if len(layers) > 1 else pw / 2)
    y = lambda v: T + ph * (hi - math.log10(max(v, 10 ** lo))) / (hi - lo)
    out = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="error per layer, {e(pair_name(comp))}">']
    for k in range(int(lo), int(hi) + 1):
        yy = y(10 ** k)
        out.append(f'<line x1="{L}" y1="{yy:.1f}" x2="{L + pw}" y2="{yy:.1f}" stroke="#eaeef2"/>'
                   f'<text x="{L - 6}" y="{yy + 4:.1f}" text-anchor="end">1e{k}</text>')
    for n in layers:
        out.append(f'<text x="{x(n):.1f}" y="{T + ph + 16}" text-anchor="middle">{n}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 4}" text-anchor="middle">layer N</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#8c959f"/>')
    ya = y(atol) if atol > 0 else T + ph
    out.append(f'<line x1="{L}" y1="{ya:.1f}" x2="{L + pw}" y2="{ya:.1f}" stroke="#cf222e" stroke-dasharray="6 3"/>')
    styles = {("hidden_states", "max"): ("#0969da", ""), ("hidden_states", "mean"): ("#0969da", "4 3"),
              ("attentions", "max"): ("#bf8700", ""), ("attentions", "mean"): ("#bf8700", "4 3")}
    legend = []
    for grp, pts in series.items():
        for i, stat in ((1, "max"), (2, "mean")):
            col, dash = styles[(grp, stat)]
            coords = [(x(p[0]), y(p[i]) if p[i] else T + ph, p) for p in pts if p[i] is not None]
            if not coords:
                continue
            path = " ".join(f"{'M' if j == 0 else 'L'}{cx:.1f},{cy:.1f}" for j, (cx, cy, _) in enumerate(coords))
            out.append(f'<path d="{path}" fill="none" stroke="{col}" stroke-width="1.8" stroke-dasharray="{dash}"/>')
            for cx, cy, p in coords:
                fill = col if stat == "max" else "#fff"
                out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{fill}" stroke="{col}">'
                           f'<title>{e(grp)}.{p[0]} {stat} abs diff {num(p[i])}</title></circle>')
            legend.append((f"{'attn' if grp == 'attentions' else 'hidden'} {stat}", col, dash))
    legend.append((f"atol {atol:g}", "#cf222e", "6 3"))
    for j, (label, col, dash) in enumerate(legend):
        ly = T + 10 + 16 * j
        out.append(f'<line x1="{L + pw + 8}" y1="{ly}" x2="{L + pw + 26}" y2="{ly}" stroke="{col}" '
                   f'stroke-width="1.8" stroke-dasharray="{dash}"/><text x="{L + pw + 30}" y="{ly + 4}">{e(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def heat_map(comp: dict, inputs: dict) -> str:
    """Batch rows x token positions of the worst token-aligned output; padded cells hatched."""
    te = comp.get("token_error")
    if not te or not te.get("values"):
        return ""
    values = te["values"]
    mask = inputs.get("attention_mask")
    uid = "".join(c for c in f"{comp['reference']}-{comp['candidate']}" if c.isalnum() or c == "-")  # unique ids
    nonfinite = {tuple(p) for p in te.get("nonfinite") or []}
    lo, hi = _log_range([v for row in values for v in row if v is not None])
    rows, cols = len(values), max(len(r) for r in values)
    cell = max(6, min(24, 720 // max(cols, 1)))
    ch = max(cell, min(28, 200 // max(rows, 1)))  # cell height: few rows get taller cells
    L, T = 34, 8
    W, H = L + cols * cell + 90, T + rows * ch + 30
    out = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="abs diff per batch row and token of {e(te.get("output"))}">',
           f'<defs><pattern id="pad-{uid}" width="4" height="4" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="4" height="4" fill="#eaeef2"/>'
           '<line x1="0" y1="0" x2="0" y2="4" stroke="#8c959f" stroke-width="1.5"/></pattern></defs>']
    for b, row in enumerate(values):
        out.append(f'<text x="{L - 4}" y="{T + b * ch + ch * 0.65:.1f}" text-anchor="end">{b}</text>')
        for t, v in enumerate(row):
            padded = v is None or (mask is not None and b < len(mask) and t < len(mask[b]) and not mask[b][t])
            xx, yy = L + t * cell, T + b * ch
            if (b, t) in nonfinite:
                fill, tip = "#cf222e", "NaN/Inf"
            elif padded:
                fill, tip = f"url(#pad-{uid})", "padded (excluded)"
            else:
                frac = 0.0 if not v else (math.log10(v) - lo) / (hi - lo)
                fill, tip = color(frac), f"max abs diff {v:.3g}"
            out.append(f'<rect x="{xx}" y="{yy}" width="{cell}" height="{ch}" fill="{fill}" stroke="#fff" '
                       f'stroke-width="0.5"><title>row {b}, token {t}: {tip}</title></rect>')
    for t in range(0, cols, max(1, cols // 8)):
        out.append(f'<text x="{L + t * cell + cell / 2:.1f}" y="{T + rows * ch + 13}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{L}" y="{H - 2}">token →</text>')
    gx = L + cols * cell + 14
    gh = max(rows * ch, 40)
    out.append(f'<defs><linearGradient id="scale-{uid}" x1="0" y1="1" x2="0" y2="0">' + "".join(
        f'<stop offset="{i / 4:.2f}" stop-color="{color(i / 4)}"/>' for i in range(5)) + "</linearGradient></defs>")
    out.append(f'<rect x="{gx}" y="{T}" width="12" height="{gh}" fill="url(#scale-{uid})"/>'
               f'<text x="{gx + 16}" y="{T + 9}">1e{int(hi)}</text><text x="{gx + 16}" y="{T + gh}">1e{int(lo)}</text>')
    out.append("</svg>")
    return "".join(out)


def output_table(comp: dict) -> str:
    head = ("output", "shape", "max abs", "mean abs", "max rel", "cosine", "req. atol", "mismatched",
            "worst index", "NaN/Inf", "atol / rtol", "masked", "verdict")
    rows = []
    for r in comp["outputs"]:
        nf = r.get("nonfinite") or {}
        cells = [f"<code>{e(r['name'])}</code>", e(shape(r)), num(r.get("max_abs_diff")), num(r.get("mean_abs_diff")),
                 num(r.get("max_rel_diff")), num(r.get("cosine"), ".6f"), num(r.get("required_atol")),
                 f"{r.get('mismatched', 0)}/{r.get('total', 0)} ({100 * (r.get('mismatched_share') or 0):.1f}%)",
                 e(",".join(map(str, r["worst_index"])) if r.get("worst_index") else None),
                 f"{nf.get('reference', 0)}/{nf.get('candidate', 0)}", f"{r['atol']:g} / {r['rtol']:g}",
                 "yes" if r.get("masked") else "no",
                 '<span class="pass">PASS</span>' if r["passed"] else '<span class="failtxt">FAIL</span>']
        tds = "".join(f'<td class="n">{c}</td>' if 2 <= i <= 10 else f"<td>{c}</td>" for i, c in enumerate(cells))
        rows.append(f'<tr class="{"" if r["passed"] else "bad"}">{tds}</tr>')
        if r.get("error"):
            rows.append(f'<tr class="bad"><td colspan="{len(head)}">{e(r["error"])}</td></tr>')
    return ('<div class="scroll"><table class="metrics"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def pair_section(comp: dict, inputs: dict, index: int = 0) -> str:
    rows = comp["outputs"]
    ok = sum(r["passed"] for r in rows)
    v = '<span class="pass">PASS</span>' if comp["passed"] else '<span class="failtxt">FAIL</span>'
    parts = [f'<section class="pair" id="{anchor("forward", index, comp)}"><h2>{e(pair_name(comp))}: {v}</h2>',
             f"<p>{ok}/{len(rows)} outputs within tolerance"
             + (f" (atol {rows[0]['atol']:g}, rtol {rows[0]['rtol']:g}, rule |a−b| ≤ atol + rtol·|b|, "
                f"reference {e(comp['reference'])})" if rows else "") + "</p>"]
    if comp.get("first_divergence"):
        first = next(r for r in rows if r["name"] == comp["first_divergence"])
        parts.append(f'<p class="first">First divergence: <code>{e(first["name"])}</code>. '
                     f"{e(mismatch_message(first))}</p>")
    chart, heat = layer_chart(comp), heat_map(comp, inputs)
    if chart or heat:
        parts.append('<div class="charts">')
        if chart:
            parts.append(f"<figure>{chart}<figcaption>Max (solid) and mean (dashed) abs diff per layer, "
                         "log scale; red dashed line: atol.</figcaption></figure>")
        if heat:
            te = comp["token_error"]
            parts.append('<figure class="wide">' + f"{heat}<figcaption>Abs diff of <code>{e(te['output'])}</code> (the token-aligned "
                         f"output with the largest max abs diff, {num(te.get('max_abs_diff'))}) per batch row and "
                         "token, max over the other axes; hatched: padded (excluded).</figcaption></figure>")
        parts.append("</div>")
    parts.append(output_table(comp))
    agree = [f"<li><code>{e(r['name'])}</code>: {e(agreement_shown(r))}</li>" for r in rows if agreement_shown(r)]
    agree += [f"<li><code>{e(r['name'])}</code>: {e(oracle_shown(r))}</li>" for r in rows if oracle_shown(r)]
    agree += [f"<li>{e(noise_hint(comp))}</li>"] if noise_hint(comp) else []
    if agree:
        parts.append(f'<ul class="tight">{"".join(agree)}</ul>')
    parts.append("</section>")
    return "".join(parts)


def loading_sections(results: dict) -> list[str]:
    """Each side's loading settings and the reduced-precision verdicts (parity.report.loading), as text; the
    tokenizer pairs have their own section."""
    from parity.report.loading import sections

    return [f'<h2>{e(title.capitalize())}</h2><ul class="tight wrap">'
            + "".join(f"<li>{e(line.strip())}</li>" for line in lines) + "</ul>"
            for title, lines in sections(results, verbose=True) if title != "tokenizers"]


def tokenizers_section(results: dict) -> str:
    """``tokenizers`` (when a results file has the list), rendered generically: per pair its verdict and the
    rest of its entry as tables."""
    entries = results.get("tokenizers")
    if not isinstance(entries, list):
        return ""
    out = ['<h2 id="tokenizers">Tokenizers</h2>']
    for i, entry in enumerate(x for x in entries if isinstance(x, dict)):
        rest = {k: v for k, v in entry.items() if k not in ("reference", "candidate", "passed")}
        v = "SKIPPED" if entry.get("skipped") else ("PASS" if entry.get("passed") else "FAIL")
        out.append(f'<section class="behaviour" id="{anchor("tokenizers", i, entry)}">'
                   f"<h3>{e(entry.get('reference'))} vs {e(entry.get('candidate'))}: {badge(v)}</h3>"
                   f'<div class="scroll wrap">{generic(rest) if rest else ""}</div></section>')
    return "".join(out)


def _list(items) -> str:
    items = list(items or [])
    if not items:
        return "none"
    shown = "".join(f"<li><code>{e(i)}</code></li>" for i in items[:20])
    more = f"<li>… {len(items) - 20} more</li>" if len(items) > 20 else ""
    return f'<ul class="tight">{shown}{more}</ul>'


def _camel(name) -> str:
    """A class name escaped, with break opportunities between its words (TFBert|For|Sequence|Classification):
    the load table fits a narrow window without cutting a word in two."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "<wbr/>", e(name))


def load_section(results: dict) -> str:
    head = "<tr><th>framework</th><th>status</th><th>class</th><th>weights / conversion</th><th>device</th>" \
           "<th>import s</th><th>load s</th><th>run s</th><th>missing</th><th>unexpected</th><th>mismatched</th>" \
           "<th>notes</th></tr>"
    rows = []
    for name, fw in results.get("frameworks", {}).items():
        sec = fw.get("seconds") or {}
        load = fw.get("load") or {}
        status = e(fw.get("status"))
        if fw.get("error"):
            status += f"<div><small>{e(fw['error'])}</small></div>"
        times = "".join(f'<td class="n">{num(sec.get(k), ".2f")}</td>' for k in ("import", "load", "run"))
        rows.append(f"<tr><td>{e(name)}</td><td>{status}</td>"
                    f"<td class=\"cls\"><code>{_camel(fw.get('class_name'))}</code></td>"
                    f"<td>{e(source(fw))}</td><td>{e(fw.get('device'))}</td>{times}"
                    f"<td>{_list(load.get('missing'))}</td><td>{_list(load.get('unexpected'))}</td>"
                    f"<td>{_list(load.get('mismatched'))}</td><td>{_list(load.get('notes'))}</td></tr>")
    return (f'<h2>Load report</h2><div class="scroll"><table class="load">{head}{"".join(rows)}</table></div>'
            "<p class=\"meta\">missing: weights the model expected but the file lacked (newly initialised); "
            "unexpected: weights in the file the model does not use.</p>")


def generic(value) -> str:
    """Render any JSON value: dicts as key/value tables, lists of dicts as tables, scalars escaped."""
    if isinstance(value, dict):
        return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{generic(v)}</td></tr>"
                                   for k, v in value.items()) + "</table>"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return ("<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{generic(v.get(k))}</td>" for k in keys) + "</tr>"
                          for v in value) + "</table>")
    if isinstance(value, list):
        return e(", ".join(str(v) for v in value)) if value else "-"
    if isinstance(value, float):
        return num(value, ".3g")
    return e(value)


def diagnosis_section(diag: dict) -> str:
    """The --explain narrative as read top to bottom, the per-layer table, then the raw findings."""
    narrative = diag.get("narrative") or []
    rest = {k: v for k, v in diag.items() if k not in ("narrative", "layers")}
    html = "".join(f"<p class=\"narrative\">{e(line)}</p>" for line in narrative)
    if diag.get("layers"):
        html += generic(diag["layers"])
    return html + f"<details><summary>all findings</summary>{generic(rest)}</details>"


def summary_block(results: dict) -> str:
    """The verdict banner: every verdict that counts toward the exit code (common.verdicts), each linked to its
    section, then the frameworks that did not run and a stand-in reference."""
    rows = "".join(f'<tr><td>{e(v["kind"])}</td><td><a href="#{e(v["anchor"])}">{e(v["pair"])}</a></td>'
                   f'<td>{badge(v["verdict"])}</td><td class="wrap">{e(v["detail"])}</td></tr>'
                   for v in verdicts(results))
    table = (f'<table class="verdicts"><thead><tr><th>check</th><th>pair</th><th>verdict</th><th>detail</th></tr>'
             f"</thead><tbody>{rows}</tbody></table>") if rows else ""
    notes = [f"<li>{e(name)}: <b>{e(fw.get('status'))}</b>: {e(fw.get('error'))}</li>"
             for name, fw in results.get("frameworks", {}).items() if fw.get("status") != "ok"]
    if stand_in(results):
        notes.append(f"<li>{e(stand_in(results))}</li>")
    notes_html = f'<ul class="tight wrap">{"".join(notes)}</ul>' if notes else ""
    fail = not results.get("passed")
    return (f'<div class="verdict{" fail" if fail else ""}"><span class="badge">{verdict(results)}</span>'
            f"<div>{e(verdict_line(results))}{table}{notes_html}</div></div>")


def environment_section(results: dict) -> str:
    ck = results.get("checkpoint", {})
    env = results.get("environment", {})
    return ('<h2>Environment</h2><table class="wrap">'
            + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in env.get("versions", {}).items())
            + f"<tr><th>platform</th><td>{e(env.get('platform'))}</td></tr>"
            + f"<tr><th>CPUs</th><td>{e(env.get('cpu_count'))}</td></tr>"
            + "".join(f"<tr><th>device {e(k)}</th><td>{e(v)}</td></tr>" for k, v in (env.get("devices") or {}).items())
            + f"<tr><th>checkpoint sha256</th><td><code>{e(ck.get('fingerprint'))}</code></td></tr>"
            + "".join(f"<tr><th>environment</th><td>{e(line)}</td></tr>" for line in environments(results))
            + "</table>")


def render(results: dict) -> str:
    ck = results.get("checkpoint", {})
    inputs = results.get("inputs", {})
    shapes = inputs.get("shapes") or {}
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>parity {verdict(results)}: {e(ck.get('path'))}</title><style>{CSS}</style></head><body>",
        f'<h1 class="wrap">parity report: <code>{e(ck.get("path"))}</code></h1>',
        f'<p class="meta wrap">model_type {e(ck.get("model_type"))} · task {e(results.get("task"))} · '
        f'created {e(results.get("created"))} · schema {e(results.get("schema_version"))}'
        + (f' · labels {e(labels_line(ck))}' if labels_line(ck) else "") + '</p>',
        summary_block(results),
        f'<p class="meta">inputs: {e(inputs.get("source"))} {e(shapes.get("input_ids") or next(iter(shapes.values()), None))}, '
        f'{e(inputs.get("padded_positions"))} padded positions excluded, seed {e(inputs.get("seed"))}'
        + (f', rows {e(", ".join(map(str, inputs["empty_rows"])))} all padding (excluded from every comparison)'
           if inputs.get("empty_rows") else "") + '</p>',
    ]
    parts += [pair_section(c, inputs, i) for i, c in enumerate(results.get("comparisons", []))]
    parts += [generation_section(results), pipeline_section(results), tokenizers_section(results)]
    parts += loading_sections(results)
    parts.append(load_section(results))
    diags = diagnoses(results)
    if diags:
        parts.append("<h2>Diagnosis</h2>")
        for title, diag in diags:
            parts.append(f'<h3>{e(title)}</h3><div class="scroll wrap">{diagnosis_section(diag)}</div>')
    texts = inputs.get("texts") or []
    if texts:
        parts.append('<h2>Inputs</h2><ol class="wrap" start="0">' + "".join(f"<li>{e(t)}</li>" for t in texts)
                     + "</ol>")
    parts += [environment_section(results), "</body></html>\n"]
    return "".join(parts)
