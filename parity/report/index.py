"""index.html over several results: one row per checkpoint, its verdict and a link to its report."""

from __future__ import annotations

from parity.report.common import pair_name, verdict_line
from parity.report.html import CSS, e


def render(entries: list) -> str:
    """``entries``: (relative link to report.html or None, results dict), in the order given."""
    n_fail = sum(1 for _, r in entries if not r.get("passed"))
    rows = []
    for href, res in entries:
        ck = res.get("checkpoint", {})
        pairs = "".join(
            f"<li>{e(pair_name(c))}: {'PASS' if c['passed'] else 'FAIL at <code>' + e(c['first_divergence']) + '</code>'}</li>"
            for c in res.get("comparisons", []))
        bad = "".join(f"<li>{e(n)}: {e(f.get('status'))}</li>" for n, f in res.get("frameworks", {}).items()
                      if f.get("status") != "ok")
        name = f'<a href="{e(href)}">{e(ck.get("path"))}</a>' if href else e(ck.get("path"))
        cls = "pass" if res.get("passed") else "failtxt"
        rows.append(f'<tr class="{"" if res.get("passed") else "bad"}"><td>{name}</td><td>{e(ck.get("model_type"))}</td>'
                    f'<td>{e(res.get("task"))}</td><td><span class="{cls}">{e(verdict_line(res))}</span></td>'
                    f'<td><ul class="tight">{pairs}{bad}</ul></td><td>{e(res.get("created"))}</td></tr>')
    overall = "FAIL" if n_fail else "PASS"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>parity index: {overall}</title><style>{CSS}</style></head><body>"
            f"<h1>parity: {len(entries)} checkpoints</h1>"
            f'<div class="verdict{" fail" if n_fail else ""}"><span class="badge">{overall}</span>'
            f"<div>{len(entries) - n_fail} pass, {n_fail} fail</div></div>"
            "<table><tr><th>checkpoint</th><th>model_type</th><th>task</th><th>verdict</th><th>pairs</th>"
            f"<th>created</th></tr>{''.join(rows)}</table></body></html>\n")
