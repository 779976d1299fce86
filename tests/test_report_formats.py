"""Every report format rendered from the committed results files (real tiny-model runs)."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from parity.numerics.compare import compare_pair
from parity.report import console, html, index, junit, markdown
from parity.report.common import layer_series

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
XSS = "<script>alert('x')</script>"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(params=["pass", "fail", "unsupported"])
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
