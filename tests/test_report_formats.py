"""Every report format rendered from the committed results files (real tiny-model runs)."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

import numpy as np
import pytest

from parity.numerics.compare import compare_pair
from parity.report import console, html, index, junit, markdown
from parity.report.common import layer_series, verdicts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
XSS = "<script>alert('x')</script>"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(params=["pass", "fail", "unsupported", "generation", "near_tie", "pipeline"])
def results(request):
    return load(request.param)


# --- the fixtures themselves: real runs, the shapes the reports rely on ---------------------------

def test_fixtures_are_what_they_claim():
    ok, bad, uns = load("pass"), load("fail"), load("unsupported")
    assert ok["passed"] and ok["exit_code"] == 0 and all(c["passed"] for c in ok["comparisons"])
    assert bad["exit_code"] == 1
    tf = next(c for c in bad["comparisons"] if c["candidate"] == "tf")
    assert tf["first_divergence"] == "hidden_states.2" and bad["diagnosis"]["pairs"][0]["side"]["drifted"] == "tf"
    assert uns["frameworks"]["flax"]["status"] == "unsupported" and uns["checkpoint"]["model_type"] == "mpnet"
    for res in (ok, bad, uns):
        mask = res["inputs"]["attention_mask"]
        assert np.array_equal(np.array(mask).shape, res["inputs"]["shapes"]["input_ids"])
        assert sum(row.count(0) for row in mask) == res["inputs"]["padded_positions"]
        for comp in res["comparisons"]:
            te = comp["token_error"]
            worst = max((o for o in comp["outputs"] if o["name"].startswith(("hidden", "attent"))),
                        key=lambda o: o["max_abs_diff"])
            assert te["output"] == worst["name"] and te["max_abs_diff"] == worst["max_abs_diff"]
            # padded positions are None, every other cell a number
            for row_v, row_m in zip(te["values"], mask):
                assert [v is None for v in row_v] == [m == 0 for m in row_m]
            assert max(v for r in te["values"] for v in r if v is not None) == pytest.approx(te["max_abs_diff"], rel=1e-2)


def test_token_error_is_computed_per_row_and_token_and_ignores_padding():
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    ref = {"hidden_states.0": np.zeros((2, 4, 3), np.float32),
           "attentions.0": np.zeros((2, 2, 4, 4), np.float32), "logits": np.zeros((2, 5), np.float32)}
    cand = copy.deepcopy(ref)
    cand["hidden_states.0"][0, 2, 1] = 0.5
    cand["hidden_states.0"][1, 3, 0] = 9.0           # padded: excluded from verdict and heat map
    cand["attentions.0"][1, 1, 1, 0] = 0.25
    cand["logits"][0, 0] = 7.0                       # no token axis: never the heat-map output
    comp = compare_pair("pt", "tf", ref, cand, list(ref), tolerance=lambda n: (1e-5, 1e-5), attention_mask=mask)
    te = comp["token_error"]
    assert te["output"] == "hidden_states.0" and te["max_abs_diff"] == 0.5
    assert te["values"] == [[0.0, 0.0, 0.5, None], [0.0, 0.0, None, None]] and te["nonfinite"] == []
    del cand["hidden_states.0"], ref["hidden_states.0"]
    comp = compare_pair("pt", "tf", ref, cand, list(ref), tolerance=lambda n: (1e-5, 1e-5), attention_mask=mask)
    assert comp["token_error"]["output"] == "attentions.0"
    assert comp["token_error"]["values"] == [[0.0, 0.0, 0.0, None], [0.0, 0.25, None, None]]
    cand["attentions.0"][0, 0, 2, 1] = np.nan
    comp = compare_pair("pt", "tf", ref, cand, list(ref), tolerance=lambda n: (1e-5, 1e-5), attention_mask=mask)
    assert comp["token_error"]["nonfinite"] == [[0, 2]]


# --- Markdown ---------------------------------------------------------------------------------------

def test_markdown_fail_has_verdict_table_and_first_divergence():
    res = load("fail")
    md = markdown.render(res)
    row = {c["candidate"]: next(o for o in c["outputs"] if o["name"] == "hidden_states.2") for c in res["comparisons"]}
    n = row["tf"]["mismatched"]
    rows, toks, hidden = row["tf"]["shape"]
    total = (rows * toks - res["inputs"]["padded_positions"]) * hidden  # padded positions are not counted
    assert md.startswith("## ❌ parity: FAIL (exit 1: parity mismatch)")
    assert "**pt vs tf: FAIL** (6/8 outputs within atol=1e-05 rtol=1e-05); first divergence **`hidden_states.2`**: " \
           f"Mismatched elements: {n} / {total} ({100 * n / total:.1f}%)" in md
    assert "| output | pt vs tf max abs | pt vs flax max abs |" in md
    assert f"| `hidden_states.2` | ❌ {row['tf']['max_abs_diff']:.2e} | ✅ {row['flax']['max_abs_diff']:.2e} |" in md
    assert "**Diagnosis (pt vs tf)**: pt vs tf: first divergence at hidden_states.2 (layer 1 output)." in md
    assert "<details>" not in md  # 8 rows: no folding needed


def test_markdown_pass_and_unsupported():
    assert markdown.render(load("pass")).startswith("## ✅ parity: PASS (exit 0")
    md = markdown.render(load("unsupported"))
    assert "- **flax: unsupported**: transformers 4.57.6 has no flax class for model type 'mpnet'" in md
    assert "Diagnosis" not in md


def test_markdown_folds_long_tables_and_stays_under_64k():
    res = load("pass")
    for comp in res["comparisons"]:
        base = comp["outputs"]
        comp["outputs"] = [dict(base[i % len(base)], name=f"hidden_states.{i}") for i in range(400)]
    res["checkpoint"]["path"] = "a|b<i>x</i>"
    md = markdown.render(res)
    assert "<details><summary>400 outputs per pair</summary>" in md and md.count("</details>") == md.count("<details>")
    assert len(md.encode()) < 64 * 1024
    assert "a\\|b&lt;i&gt;x&lt;/i&gt;" in md and "<i>" not in md
    res["comparisons"] *= 60  # absurdly long: still under the cap, verdict kept
    md = markdown.render(res)
    assert len(md.encode()) < 64 * 1024 and md.startswith("## ✅ parity: PASS") and "truncated" in md
    assert md.count("</details>") == md.count("<details>")


# --- JUnit XML ------------------------------------------------------------------------------------

TS_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def assert_junit_schema(root: ET.Element) -> None:
    """The rules of the Jenkins/Ant junit-10.xsd that GitLab, Jenkins and GitHub reporters read."""
    assert root.tag == "testsuites"
    assert set(root.attrib) <= {"name", "time", "tests", "failures", "errors", "skipped", "disabled"}
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root:
        assert suite.tag == "testsuite"
        assert {"name", "tests"} <= set(suite.attrib) <= {
            "name", "tests", "failures", "errors", "skipped", "disabled", "time", "timestamp", "hostname", "id",
            "package", "file", "log", "url", "version", "group"}
        assert TS_PATTERN.match(suite.get("timestamp")) and float(suite.get("time")) >= 0
        order = [c.tag for c in suite]
        assert order == sorted(order, key=["properties", "testcase", "system-out", "system-err"].index)
        for prop in suite.iterfind("properties/property"):
            assert set(prop.attrib) == {"name", "value"}
        cases = suite.findall("testcase")
        counts = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
        for case in cases:
            assert "name" in case.attrib and set(case.attrib) <= {"name", "classname", "time", "assertions",
                                                                  "status", "file", "line"}
            float(case.get("time", "0"))
            tags = [c.tag for c in case]
            assert tags == sorted(tags, key=["skipped", "error", "failure", "system-out", "system-err"].index)
            assert tags.count("skipped") <= 1
            for child in case:
                assert set(child.attrib) <= {"message", "type"}
            counts["failures"] += "failure" in tags
            counts["errors"] += "error" in tags
            counts["skipped"] += "skipped" in tags
        for k, v in counts.items():
            assert int(suite.get(k)) == v, (suite.get("name"), k)
            totals[k] += v
    for k, v in totals.items():
        assert int(root.get(k)) == v


def test_junit_validates_for_every_fixture(results):
    assert_junit_schema(ET.fromstring(junit.render(results).encode()))


def test_junit_fail_carries_worst_diff_and_first_divergence():
    res = load("fail")
    root = ET.fromstring(junit.render(res).encode())
    hs = [o for o in res["comparisons"][0]["outputs"] if o["name"].startswith("hidden_states.")]
    worst = max(hs, key=lambda o: o["max_abs_diff"])
    suites = {s.get("name"): s for s in root}
    assert list(suites) == ["frameworks", "pt vs tf (tiny/bert-tf-altered)", "pt vs flax (tiny/bert-tf-altered)"]
    tf = suites["pt vs tf (tiny/bert-tf-altered)"]
    assert [c.get("name") for c in tf.findall("testcase")] == ["hidden_states", "attentions", "logits"]
    fail = tf.find("testcase[@name='hidden_states']/failure")
    assert fail.get("message") == (f"2/4 hidden_states outputs out of tolerance; worst {worst['name']}: max abs diff "
                                   f"{worst['max_abs_diff']:.2e} (atol 1e-05, rtol 1e-05); first divergence hidden_states.2")
    n = next(o for o in hs if o["name"] == "hidden_states.2")["mismatched"]
    assert f"hidden_states.2: Mismatched elements: {n} / 2208" in fail.text
    assert tf.find("testcase[@name='attentions']/failure") is None
    assert root.get("failures") == "1" and root.get("errors") == "0"
    assert suites["pt vs flax (tiny/bert-tf-altered)"].get("failures") == "0"


def test_junit_unsupported_is_skipped_and_errors_are_errors():
    root = ET.fromstring(junit.render(load("unsupported")).encode())
    skipped = root.find("testsuite[@name='frameworks']/testcase[@name='flax load and run']/skipped")
    assert "no flax class for model type 'mpnet'" in skipped.get("message")
    res = load("pass")
    res["frameworks"]["tf"].update(status="crashed", error="worker died (SIGKILL)\x01")
    res["comparisons"] = res["comparisons"][1:]
    root = ET.fromstring(junit.render(res).encode())
    assert_junit_schema(root)
    err = root.find("testsuite[@name='frameworks']/testcase[@name='tf load and run']/error")
    assert err.get("type") == "crashed" and err.get("message") == "worker died (SIGKILL)"  # control char dropped
    assert root.get("errors") == "1"


# --- HTML -------------------------------------------------------------------------------------------

def test_html_is_self_contained_and_escaped(results):
    page = html.render(results)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|@import|url\((?!#)|https?://", page, re.I)
    if results["inputs"]["texts"] and XSS in results["inputs"]["texts"]:
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    ET.fromstring(re.sub(r"<!DOCTYPE html>|<meta[^>]*>", "", page).encode())  # well-formed: every tag closed


def test_html_fail_shows_verdict_first_charts_table_load_diagnosis_environment():
    res = load("fail")
    page = html.render(res)
    order = [page.index(s) for s in ('class="verdict fail"', "<h2>pt vs tf:", "First divergence: <code>hidden_states.2",
                                     "aria-label=\"error per layer, pt vs tf\"", "aria-label=\"abs diff per batch row",
                                     "<th>output</th>", "<h2>Load report</h2>", "<h2>Diagnosis</h2>",
                                     "<h2>Environment</h2>")]
    assert order == sorted(order)
    tf = res["comparisons"][0]
    # Layer chart: one point per hidden state and attention map, max and mean.
    series = layer_series(tf["outputs"])
    chart = page[page.index('aria-label="error per layer, pt vs tf"'):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count("<circle") == 2 * (len(series["hidden_states"]) + len(series["attentions"]))
    worst = next(o for o in tf["outputs"] if o["name"] == "hidden_states.2")["max_abs_diff"]
    assert f"<title>hidden_states.2 max abs diff {worst:.2e}</title>" in chart and "atol 1e-05" in chart
    # Heat map: one cell per (row, token); padded cells hatched, exactly the padded positions.
    heat = page[page.index('aria-label="abs diff per batch row and token of hidden_states.3"'):]
    heat = heat[:heat.index("</svg>")]
    rows, toks = res["inputs"]["shapes"]["input_ids"]
    assert heat.count("<title>row ") == rows * toks
    assert heat.count('fill="url(#pad-pt-tf)"') == res["inputs"]["padded_positions"]
    te = tf["token_error"]
    b, t = max(((b, t) for b, r in enumerate(te["values"]) for t, v in enumerate(r) if v is not None),
               key=lambda bt: te["values"][bt[0]][bt[1]])
    assert f"<title>row {b}, token {t}: max abs diff {te['max_abs_diff']:.3g}</title>" in heat
    # Table: every metric of every output; load report; the diagnosis narrative and its per-layer table.
    assert page.count('<tr class="bad">') == 2
    assert "<td>tf_model.h5 (native)</td>" in page and "<th>growth</th>" in page
    assert '<p class="narrative">pt vs tf: first divergence at hidden_states.2 (layer 1 output).</p>' in page
    assert "<th>transformers</th><td>4.57.6</td>" in page


def test_html_without_diagnosis_token_error_or_comparisons_still_renders():
    res = load("pass")
    for comp in res["comparisons"]:
        comp.pop("token_error")
    res["inputs"].pop("attention_mask")
    page = html.render(res)
    assert "Diagnosis" not in page and "abs diff per batch row" not in page and "error per layer" in page
    res = load("unsupported")
    res["comparisons"] = []
    res["frameworks"]["pt"].update(status="error", error="boom <b>")
    page = html.render(res)
    assert "<b>error</b>: boom &lt;b&gt;" in page


def test_index_links_each_report_with_its_verdict():
    entries = [("pass/report.html", load("pass")), ("fail/report.html", load("fail")),
               ("uns/report.html", load("unsupported"))]
    page = index.render(entries)
    assert '<span class="badge">FAIL</span><div>2 pass, 1 fail</div>' in page
    assert '<a href="fail/report.html">tiny/bert-tf-altered</a>' in page
    assert "pt vs tf: FAIL at <code>hidden_states.2</code>" in page and "flax: unsupported" in page


def test_console_renders_from_the_fixture():
    out = console.render(load("unsupported"))
    assert "flax      unsupported" in out and out.endswith("verdict: PASS (exit 0: all comparisons pass)")


# --- behaviour: generation and pipeline results (real runs of fixtures/generation.py's checkpoints) ----

def _parted(entry: dict) -> list:
    return [r for r in entry["rows"] if r["first_divergence_step"] is not None]


def test_behaviour_fixtures_are_what_they_claim():
    """generation.json: the forward pairs pass and both generation pairs fail on the loop (repetition_penalty);
    near_tie.json: one near tie; pipeline.json: TF flips a label, Flax is skipped. Each parted row records
    both sides' best candidates there, best first; greedy picks the best of what it chose from."""
    gen, tie, pipe = load("generation"), load("near_tie"), load("pipeline")
    assert gen["exit_code"] == 1 and all(c["passed"] for c in gen["comparisons"])
    assert [(g["candidate"], g["passed"]) for g in gen["generation"]] == [("tf", False), ("flax", False)]
    assert {r["reason"]["kind"] for g in gen["generation"] for r in _parted(g)} == {"generation_loop"}
    (g,) = tie["generation"]
    assert [r["reason"]["kind"] for r in _parted(g)] == ["near_tie"]
    for entry in gen["generation"] + tie["generation"]:
        for row in _parted(entry):
            reason = row["reason"]
            for fw, chosen in reason["tokens"].items():
                top = reason["top_candidates"][fw]
                scores = [c["score"] for c in top]
                assert len(top) == 5 and scores == sorted(scores, reverse=True)
                assert chosen == row["tokens"][0 if fw == entry["reference"] else 1][row["first_divergence_step"]]
                if reason["scores"] == "processed":
                    assert top[0]["token"] == chosen and all("logit" in c for c in top)
    reason = _parted(g)[0]["reason"]
    ref_top = reason["top_candidates"]["pt"]
    assert [c["token"] for c in ref_top[:2]] == [reason["tokens"]["pt"], reason["tokens"]["tf"]]
    assert ref_top[0]["score"] - ref_top[1]["score"] == pytest.approx(reason["margin"], rel=1e-6)
    tf, flax = pipe["pipeline"]
    assert not tf["passed"] and [f["index"] for f in tf["flips"]] and flax["skipped"]
    assert all(len(it["score"]) == 2 for it in tf["items"]) and XSS in pipe["inputs"]["texts"][-1]


def _summary_rows(page: str) -> list:
    table = page[page.index('<table class="verdicts">'):]
    table = table[:table.index("</table>")]
    return re.findall(r'<tr><td>(\w+)</td><td><a href="#([^"]+)">([^<]+)</a></td><td><span class="\w+">(\w+)</span>',
                      table)


@pytest.mark.parametrize("name", ["generation", "near_tie", "pipeline", "fail"])
def test_html_summary_lists_every_verdict_linked_to_its_section(name):
    res = load(name)
    page = html.render(res)
    rows = _summary_rows(page)
    assert [(kind, pair, v) for kind, _, pair, v in rows] == [(v["kind"], v["pair"], v["verdict"])
                                                             for v in verdicts(res)]
    expected = [("forward", c["passed"]) for c in res["comparisons"]]
    for kind in ("generation", "pipeline"):
        expected += [(kind, e["passed"]) for e in res.get(kind) or []]
    assert [(v["kind"], v["verdict"] != "FAIL") for v in verdicts(res)] == expected
    for _, target, _, _ in rows:
        assert page.count(f'id="{target}"') == 1
    assert "<pre>" not in page


def test_html_generation_table_marks_the_first_diverging_step_and_shows_both_sides():
    res = load("generation")
    page = html.render(res)
    marked = re.findall(r'<span class="tok parts" title="step (\d+): pt (\d+), (\w+) (\d+) \(first diverging step\)">',
                        page)
    expected = [(str(r["first_divergence_step"]), str(r["tokens"][0][r["first_divergence_step"]]), g["candidate"],
                 str(r["tokens"][1][r["first_divergence_step"]])) for g in res["generation"] for r in _parted(g)]
    assert marked == expected
    for g in res["generation"]:
        section = page[page.index(f'id="generation-{res["generation"].index(g)}-pt-{g["candidate"]}"'):]
        section = section[:section.index("</section>")]
        for row in g["rows"]:
            assert f'<td class="txt">{escape(row["text"][0], quote=True)}</td>' \
                   f'<td class="txt">{escape(row["text"][1], quote=True)}</td>' in section
        assert section.count('<table class="top">') == len(_parted(g))
        assert "<td><code>repetition_penalty</code></td><td>1.5</td><td>None</td>" in section
    flax = page[page.index('id="generation-1-pt-flax"'):]
    assert "flax&#x27;s generate never reads it" in flax[:flax.index("</section>")]


def test_html_pipeline_table_marks_flips_and_escapes_inputs():
    res = load("pipeline")
    page = html.render(res)
    section = page[page.index('id="pipeline-0-pt-tf"'):]
    section = section[:section.index("</section>")]
    tf = res["pipeline"][0]
    flipped = re.findall(r'<tr class="flip"><td class="n">(\d+)</td>', section)
    assert flipped == [str(f["index"]) for f in tf["flips"]]
    assert section.count("<tr ") == len(tf["items"])
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot; | pipes" in section
    assert 'id="pipeline-1-pt-flax"><h3>pt vs flax: <span class="skiptxt">SKIPPED</span>' in page


def test_tokenizers_are_rendered_generically_when_a_results_file_has_them():
    """A ``tokenizers`` list (not written by this parity yet): each pair's verdict in the summary of every
    format and its entry as tables, escaped."""
    res = load("pass")
    res["tokenizers"] = [{"reference": "pt", "candidate": "tf", "passed": False, "summary": "ids differ <b>",
                          "rows": [{"text": XSS, "equal": False}]}]
    assert res["passed"]  # the verdict is the file's: a renderer does not recompute it
    page = html.render(res)
    assert ("tokenizers", "tokenizers-0-pt-tf", "pt vs tf", "FAIL") in _summary_rows(page)
    section = page[page.index('id="tokenizers-0-pt-tf"'):]
    assert "ids differ &lt;b&gt;" in section and "&lt;script&gt;" in section and XSS not in page
    assert "- **pt vs tf tokenizers: FAIL**: ids differ &lt;b&gt;" in markdown.render(res)
    ET.fromstring(re.sub(r"<!DOCTYPE html>|<meta[^>]*>", "", page).encode())


def test_markdown_summary_and_compact_generation_table():
    res = load("generation")
    md = markdown.render(res)
    summary = md[:md.index("| output |")]
    for g in res["generation"]:
        assert f"- **pt vs {g['candidate']} generation: FAIL**: 3 of 3 rows part" in summary
    table = md[md.index("**generation (greedy, 8 new tokens)** (first diverging row of each pair)"):]
    rows = [line for line in table.splitlines() if line.startswith("| pt vs ")]
    assert len(rows) == len(res["generation"])
    for line, g in zip(rows, res["generation"]):
        first = min(_parted(g), key=lambda r: (r["first_divergence_step"], r["row"]))
        step = first["first_divergence_step"]
        assert line.startswith(f"| pt vs {g['candidate']} | FAIL | {first['row']} / {step} | ")
        assert f"pt {first['tokens'][0][step]}, {g['candidate']} {first['tokens'][1][step]}" in line
        assert "repetition_penalty: pt 1.5" in line
    pipe = markdown.render(load("pipeline"))
    assert "- **pt vs tf pipeline: FAIL**" in pipe and "- **pt vs flax pipeline: SKIPPED**" in pipe
    tie = markdown.render(load("near_tie"))
    assert "near tie at step" in tie and len(tie.encode()) < 64 * 1024


def test_behaviour_sections_render_files_from_before_top_candidates_and_errors():
    """Files written before ``top_candidates`` and pipeline ``score`` existed still render (the chosen tokens
    instead of the candidates); a pair whose generate failed shows its error, in the summary too."""
    res = load("generation")
    for g in res["generation"]:
        for row in g["rows"]:
            (row.get("reason") or {}).pop("top_candidates", None)
    res["generation"][1] = {"reference": "pt", "candidate": "flax", "passed": False, "first_divergence_step": None,
                            "rows": [], "error": "flax generate failed: <boom>"}
    page = html.render(res)
    assert '<table class="top">' not in page and "<div>pt chose 160, tf 95</div>" in page
    assert ("generation", "generation-1-pt-flax", "pt vs flax", "FAIL") in _summary_rows(page)
    assert '<p class="first">flax generate failed: &lt;boom&gt;</p>' in page
    pipe = load("pipeline")
    for item in pipe["pipeline"][0]["items"]:
        item.pop("score")
    assert '<td class="txt">LABEL_0</td><td class="txt">LABEL_1</td>' in html.render(pipe)
