"""report.html's behaviour sections (``--generate``, ``--pipeline``) as tables, from a results dict.

Generation, per pair: the reason in a sentence and the generation settings that
differ, then one table row per generated row: its prompt, both continuations
side by side, the tokens of both sides aligned per step (the first diverging
step marked, the steps after it greyed: they follow different prefixes), and
both sides' best candidates at that step with their scores, so that a near tie
reads as two almost equal numbers. Pipeline, per pair: one row per input with
both outputs, the flips marked. Every string from results.json is escaped;
long values wrap (``.wrap``) and nothing is wider than its table's scroll box.
"""

from __future__ import annotations

from html import escape

from parity.numerics.format import SHORT, num
from parity.report.behaviour import (KIND_WORDS, first_parted, item_verdict, pipeline_outputs, prompt,
                                     reason_sentence, settings)
from parity.report.common import anchor, pair_name


def e(x) -> str:
    return escape("-" if x is None else str(x), quote=True)


def badge(verdict: str) -> str:
    """PASS green, FAIL red, SKIPPED grey: the one verdict style of every section and the summary."""
    cls = {"PASS": "pass", "FAIL": "failtxt"}.get(verdict, "skiptxt")
    return f'<span class="{cls}">{e(verdict)}</span>'


def _verdict_of(entry: dict) -> str:
    return "SKIPPED" if entry.get("skipped") else ("PASS" if entry.get("passed") else "FAIL")


def _sentence(text: str) -> str:
    return e(text[:1].upper() + text[1:] + ("" if text.endswith(".") else "."))


def _clamped(text) -> str:
    """A long value cut to three lines, the whole of it on hover (title)."""
    return f'<div class="clamp" title="{e(text)}">{e(text)}</div>'


# --- generation -------------------------------------------------------------------------------------

def _tokens(row: dict, ref: str, cand: str) -> str:
    """Both sides' tokens, one column per step, wrapping as a whole column so the two lines stay aligned."""
    a, b = (row.get("tokens") or [[], []])[:2]
    step = row.get("first_divergence_step")
    cells = [f'<span class="tok legend"><span class="s">step</span><span>{e(ref)}</span>'
             f'<span>{e(cand)}</span></span>']
    for t in range(max(len(a), len(b))):
        ta, tb = (a[t] if t < len(a) else None), (b[t] if t < len(b) else None)
        cls = " parts" if t == step else (" after" if step is not None and t > step else "")
        tip = f"step {t}: {ref} {ta}, {cand} {tb}" + (" (first diverging step)" if t == step else "")
        cells.append(f'<span class="tok{cls}" title="{e(tip)}"><span class="s">{t}</span><span>{e(ta)}</span>'
                     f'<span>{e(tb)}</span></span>')
    return f'<div class="toks">{"".join(cells)}</div>'


def _scores(row: dict) -> str:
    """The per-step score comparison up to the diverging step: raw / processed max abs diff and verdict."""
    parts = [f"{e(k)} {num(s.get('max_abs_diff'), SHORT)} {badge('PASS' if s.get('passed') else 'FAIL')}"
             for k, s in (row.get("scores") or {}).items()]
    steps = max([s.get("steps") or 0 for s in (row.get("scores") or {}).values()] or [0])
    return f'<div class="meta small">scores over {steps} steps: {", ".join(parts) or "-"}</div>'


def _candidate(c: dict, best, kind, own: int | None, other: int | None, first: bool) -> str:
    """One candidate: token, score (with the raw logit under it where processing moved it) and its gap below
    the side's best; the token this side chose marked ``pick``, the other side's choice ``pick-other``."""
    gap = None if first or best is None or c.get("score") is None else c["score"] - best
    logit = c.get("logit")
    moved = logit is not None and num(logit, ".5g") != num(c.get("score"), ".5g")
    tip = f"{kind} score {c.get('score')!r}" + (f"; raw logit {logit!r}" if logit is not None else "")
    cls = "pick" if c.get("token") == own else ("pick-other" if c.get("token") == other else "")
    return (f'<td class="{cls}">{e(c.get("token"))}</td><td class="n" title="{e(tip)}">{num(c.get("score"), ".5g")}'
            + (f'<div class="meta">logit {num(logit, ".5g")}</div>' if moved else "")
            + f'</td><td class="n">{"" if gap is None else num(gap, ".3g")}</td>')


def _top_table(reason: dict, ref: str, cand: str) -> str:
    """Both sides' best candidates at the step, best first, side by side."""
    top = reason.get("top_candidates") or {}
    toks = reason.get("tokens") or {}
    sides = [(top.get(ref) or [], toks.get(ref), toks.get(cand)), (top.get(cand) or [], toks.get(cand), toks.get(ref))]
    head = "".join(f'<th colspan="3">{e(fw)}</th>' for fw in (ref, cand))
    sub = '<th>token</th><th>score</th><th title="how far below this side\'s best score">gap</th>' * 2
    body = []
    for i in range(max(len(sides[0][0]), len(sides[1][0]))):
        cells = [_candidate(lst[i], lst[0].get("score"), reason.get("scores"), own, other, i == 0)
                 if i < len(lst) else '<td colspan="3"></td>' for lst, own, other in sides]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="top"><thead><tr>{head}</tr><tr>{sub}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table>")


def _step_cell(row: dict, ref: str, cand: str) -> str:
    """What happened at the row's first diverging step: its reason in a word and the top candidates."""
    reason = row.get("reason")
    if row.get("first_divergence_step") is None:
        return '<span class="meta">same tokens at every step</span>'
    if not reason:
        return f"parts at step {e(row['first_divergence_step'])}"
    head = (f'<div>step {e(reason.get("step"))}: <b>{e(KIND_WORDS.get(reason.get("kind"), reason.get("kind")))}'
            f'</b> <span class="meta">({e(reason.get("scores"))} scores)</span></div>')
    if reason.get("top_candidates"):
        return head + _top_table(reason, ref, cand)
    toks = reason.get("tokens") or {}
    return head + f"<div>{e(ref)} chose {e(toks.get(ref))}, {e(cand)} {e(toks.get(cand))}</div>"


def _generation_row(results: dict, row: dict, ref: str, cand: str) -> str:
    text = row.get("text") or [None, None]
    parted = row.get("first_divergence_step") is not None
    return (f'<tr class="{"parted" if parted else ""}"><td class="n">{e(row.get("row"))}</td>'
            f"<td>{_clamped(prompt(results, row.get('row', -1)))}</td>"
            f'<td class="txt">{e(text[0])}</td><td class="txt">{e(text[1])}</td>'
            f"<td>{_tokens(row, ref, cand)}{_scores(row)}</td><td>{_step_cell(row, ref, cand)}</td></tr>")


def _settings_table(entry: dict, reason: dict | None) -> str:
    rows = settings(entry, reason)
    if not rows:
        return ""
    ref, cand = entry["reference"], entry["candidate"]
    notes = any(note for *_, note in rows)
    body = "".join(f"<tr><td><code>{e(k)}</code></td><td>{e(a)}</td><td>{e(b)}</td>"
                   + (f"<td>{e(note)}</td>" if notes else "") + "</tr>" for k, a, b, note in rows)
    return (f'<p>Generation settings that differ:</p><div class="scroll"><table class="settings wrap"><thead><tr>'
            f"<th>setting</th><th>{e(ref)}</th><th>{e(cand)}</th>{'<th>note</th>' if notes else ''}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _generation_pair(results: dict, index: int, entry: dict) -> str:
    ref, cand = entry["reference"], entry["candidate"]
    out = [f'<section class="behaviour" id="{anchor("generation", index, entry)}">'
           f"<h3>{e(pair_name(entry))}: {badge(_verdict_of(entry))}</h3>"]
    if entry.get("error"):
        return "".join(out) + f'<p class="first">{e(entry["error"])}</p></section>'
    first = first_parted(entry)
    reason = (first or {}).get("reason")
    if reason:
        out.append(f'<p class="first">Row {e(first["row"])}: {_sentence(reason_sentence(reason, ref, cand))}</p>')
    else:
        out.append(f"<p>{e(entry.get('summary'))}</p>")
    out.append(_settings_table(entry, reason))
    if reason and reason.get("text"):
        out.append(f'<details><summary>the reason in full</summary><p class="wrap">{e(reason["text"])}</p></details>')
    head = (f"<th>row</th><th>prompt</th><th>{e(ref)} continuation</th><th>{e(cand)} continuation</th>"
            "<th>tokens per step (first diverging step marked)</th><th>at the first diverging step</th>")
    rows = "".join(_generation_row(results, r, ref, cand) for r in entry.get("rows") or [])
    cols = ('<colgroup><col class="row"/><col class="txt"/><col class="txt"/><col class="txt"/><col class="toks"/>'
            "<col/></colgroup>")
    out.append(f'<div class="scroll"><table class="gen wrap">{cols}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
               "</table></div></section>")
    return "".join(out)


def generation_section(results: dict) -> str:
    """--generate: the heading with the settings every framework generated with, then each pair."""
    entries = results.get("generation")
    if entries is None:
        return ""
    cfg = results.get("config") or {}
    beams = cfg.get("num_beams", 1)
    mode = "greedy" if beams == 1 else f"{beams} beams"
    out = [f'<h2 id="generation">Generation ({e(mode)}, {e(cfg.get("max_new_tokens"))} new tokens)</h2>',
           '<p class="meta">Every framework generates from the same prompts. Scores: the next-token logits of a '
           "forward pass over each side's own sequence (raw) and what generate chose from (processed). At the "
           "first diverging step, each side's best candidates: gap is how far a score is below that side's best, "
           "the token a side chose is marked yellow and the other side's choice outlined; hover a score for its "
           "exact value.</p>"]
    if not entries:
        out.append("<p>nothing compared: the reference did not run</p>")
    out += [_generation_pair(results, i, entry) for i, entry in enumerate(entries)]
    return "".join(out)


# --- pipeline ---------------------------------------------------------------------------------------

def _pipeline_pair(index: int, entry: dict) -> str:
    ref, cand = entry["reference"], entry["candidate"]
    out = [f'<section class="behaviour" id="{anchor("pipeline", index, entry)}">'
           f"<h3>{e(pair_name(entry))}: {badge(_verdict_of(entry))}</h3>"
           f'<p class="wrap">{e(entry.get("summary") or entry.get("error"))}</p>']
    items = entry.get("items") or []
    if items:
        rows = []
        for n, item in enumerate(items):
            a, b = pipeline_outputs(item)
            bad = "flip" in item or item.get("flips") or not item.get("agrees")
            cls = "flip" if bad else ("off" if not item.get("scores_within") else "")
            rows.append(f'<tr class="{cls}"><td class="n">{n}</td><td>{_clamped(item.get("input"))}</td>'
                        f'<td class="txt">{e(a)}</td><td class="txt">{e(b)}</td><td>{e(item_verdict(item))}</td></tr>')
        out.append(f'<div class="scroll"><table class="pipe wrap"><thead><tr><th>#</th><th>input</th>'
                   f"<th>{e(ref)} output</th><th>{e(cand)} output</th><th>verdict</th></tr></thead>"
                   f"<tbody>{''.join(rows)}</tbody></table></div>")
    return "".join(out) + "</section>"


def pipeline_section(results: dict) -> str:
    """--pipeline: per pair its summary and a table of inputs with both outputs, flips marked."""
    entries = results.get("pipeline")
    if entries is None:
        return ""
    out = ['<h2 id="pipeline">Pipeline</h2>']
    if not entries:
        out.append("<p>nothing compared: the reference did not run</p>")
    out += [_pipeline_pair(i, entry) for i, entry in enumerate(entries)]
    return "".join(out)
