"""The HTML report in a real headless Chromium: loads, no console errors, no network, a screenshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import chromium
from parity.report import html, index

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"

pytestmark = pytest.mark.skipif(
    chromium.find() is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; `make test` installs it as root)")


@pytest.mark.parametrize("name", ["fail", "unsupported"])
def test_report_opens_in_headless_chromium(tmp_path, name):
    res = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    page = tmp_path / "report.html"
    page.write_text(html.render(res), encoding="utf-8")
    shot = tmp_path / "report.png"
    got = chromium.visit(page, shot, width=1000)
    assert got["errors"] == []
    assert got["requests"] == [] and got["document_requests"] == 1  # only the file itself
    assert got["title"] == f"parity {'FAIL' if name == 'fail' else 'PASS'}: {res['checkpoint']['path']}"
    assert got["text"].lstrip().startswith("parity report:")
    if name == "fail":
        # The hostile input text is shown as text, not run as a script.
        assert "<script>alert('x')</script> & \"quotes\" | pipes" in got["text"]
        assert "First divergence: hidden_states.2" in got["text"]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and got["png_bytes"] == len(data) > 20_000
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert width == 1000 and height == got["size"][1] > 600


def test_index_opens_without_errors(tmp_path):
    entries = [(f"{n}/report.html", json.loads((FIXTURES / f"{n}.json").read_text())) for n in ("pass", "fail")]
    page = tmp_path / "index.html"
    page.write_text(index.render(entries), encoding="utf-8")
    got = chromium.visit(page, None, width=900, height=600)
    assert got["errors"] == [] and got["requests"] == []
    assert "1 pass, 1 fail" in got["text"]


# What the browser laid out: the summary's rows and where their links land, the marked diverging steps (with
# their computed background against an unmarked step's), the flipped pipeline rows.
LAYOUT = """({
  summary: [...document.querySelectorAll('table.verdicts tbody tr')].map(tr => ({
    cells: [...tr.cells].slice(0, 3).map(td => td.innerText.trim()),
    target: document.getElementById(tr.querySelector('a').getAttribute('href').slice(1))?.tagName || null})),
  parts: [...document.querySelectorAll('.tok.parts')].map(el => ({
    section: el.closest('section').id, row: el.closest('tr').cells[0].innerText.trim(),
    step: el.querySelector('.s').innerText.trim(), tokens: [...el.children].slice(1).map(c => c.innerText.trim()),
    marked: getComputedStyle(el).backgroundColor,
    plain: getComputedStyle(el.parentElement.querySelector('.tok:not(.legend):not(.parts)')).backgroundColor})),
  flips: [...document.querySelectorAll('table.pipe tbody tr')].map(tr => ({
    section: tr.closest('section').id, index: tr.cells[0].innerText.trim(), flip: tr.classList.contains('flip'),
    background: getComputedStyle(tr.cells[0]).backgroundColor}))
})"""


def _expected_summary(res: dict) -> list:
    """(check, pair, verdict) of every verdict that counts toward the exit code, from the results alone."""
    out = [["forward", f"{c['reference']} vs {c['candidate']}", "PASS" if c["passed"] else "FAIL"]
           for c in res["comparisons"]]
    for kind in ("generation", "pipeline"):
        out += [[kind, f"{g['reference']} vs {g['candidate']}",
                 "SKIPPED" if g.get("skipped") else ("PASS" if g["passed"] else "FAIL")] for g in res.get(kind) or []]
    return out


@pytest.mark.parametrize("name", ["generation", "near_tie", "pipeline", "fail", "unsupported", "pass"])
def test_report_fits_a_1280_px_window_and_its_summary_lists_every_verdict(tmp_path, name):
    """Measured in the browser at 1280 px: the document is no wider than the window. The summary lists
    every verdict behind the exit code, each linked to a section that exists."""
    res = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    page = tmp_path / "report.html"
    page.write_text(html.render(res), encoding="utf-8")
    got = chromium.visit(page, None, width=1280, height=900, probe=LAYOUT)
    assert got["errors"] == [] and got["requests"] == []
    assert got["client_width"] == 1280 and got["scroll_width"] <= got["client_width"], got["overflowing"]
    summary = got["probe"]["summary"]
    assert [row["cells"] for row in summary] == _expected_summary(res)
    assert all(row["target"] == "SECTION" for row in summary), summary


def test_failing_generation_marks_each_rows_first_diverging_step(tmp_path):
    """generation.json (gpt2-reppen, pt/tf/flax): the forward pairs pass and both generation pairs fail; in the
    browser every row that parts has exactly its first diverging step marked, with both sides' tokens there."""
    res = json.loads((FIXTURES / "generation.json").read_text(encoding="utf-8"))
    assert res["exit_code"] == 1 and all(c["passed"] for c in res["comparisons"])
    assert [g["passed"] for g in res["generation"]] == [False, False]
    page = tmp_path / "report.html"
    page.write_text(html.render(res), encoding="utf-8")
    got = chromium.visit(page, None, width=1280, height=900, probe=LAYOUT)
    expected = [{"section": f"generation-{i}-pt-{g['candidate']}", "row": str(r["row"]),
                 "step": str(r["first_divergence_step"]),
                 "tokens": [str(t[r["first_divergence_step"]]) for t in r["tokens"]]}
                for i, g in enumerate(res["generation"]) for r in g["rows"] if r["first_divergence_step"] is not None]
    parts = got["probe"]["parts"]
    assert [{k: p[k] for k in ("section", "row", "step", "tokens")} for p in parts] == expected
    assert all(p["marked"] != p["plain"] for p in parts)  # the mark shows, not only a class
    assert "Generation settings that differ" in got["text"] and "repetition_penalty" in got["text"]


def test_failing_pipeline_marks_the_flips(tmp_path):
    """pipeline.json (bert-cls-flip, pt/tf/flax): TF flips one label, Flax has no pipeline (SKIPPED); the
    flipped input's row is marked, the others not, and the hostile input text shows as text."""
    res = json.loads((FIXTURES / "pipeline.json").read_text(encoding="utf-8"))
    tf, flax = res["pipeline"]
    assert not tf["passed"] and tf["flips"] and flax.get("skipped")
    page = tmp_path / "report.html"
    page.write_text(html.render(res), encoding="utf-8")
    got = chromium.visit(page, None, width=1280, height=900, probe=LAYOUT)
    rows = [r for r in got["probe"]["flips"] if r["section"] == "pipeline-0-pt-tf"]
    assert len(rows) == len(tf["items"])
    assert [r["index"] for r in rows if r["flip"]] == [str(f["index"]) for f in tf["flips"]]
    assert len({r["background"] for r in rows if r["flip"]} & {r["background"] for r in rows if not r["flip"]}) == 0
    assert "<script>alert('x')</script> & \"quotes\" | pipes" in got["text"]
