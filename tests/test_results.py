"""results.json as typed records: the committed fixtures round-trip byte for byte, reports render the
same from the records as from the file, and docs/results-schema.md is the text the code generates."""

import json
from pathlib import Path

import pytest

from parity.report import console, html, index, junit, markdown
from parity.report import support_page as support
from parity.contracts.results import ABSENT, FrameworkEntry, LoadIssues, OutputComparison, PairComparison, Results, schema_markdown

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "fixtures" / "results").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_committed_fixture_round_trips_byte_for_byte(path):
    text = path.read_text(encoding="utf-8")
    res = Results.load(path)
    assert isinstance(res.frameworks["pt"], FrameworkEntry) and isinstance(res.frameworks["pt"].load, LoadIssues)
    assert all(isinstance(c, PairComparison) for c in res.comparisons)
    assert all(isinstance(o, OutputComparison) for c in res.comparisons for o in c.outputs)
    # fixtures/results_build.py writes them with indent=1, ensure_ascii=False
    assert json.dumps(res.to_dict(), indent=1, ensure_ascii=False) + "\n" == text
    assert res == json.loads(text)  # the records are mappings equal to the dicts they write


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_reports_render_the_same_from_the_records_as_from_the_file(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    res = Results.from_dict(raw)
    for render in (console.render, markdown.render, html.render, junit.render):
        assert render(res) == render(raw)
    assert console.render(res, verbose=True) == console.render(raw, verbose=True)
    assert support.render([res]) == support.render([raw])
    assert index.render([("a/report.html", res)]) == index.render([("a/report.html", raw)])


def test_keys_a_part_does_not_carry_stay_out_and_null_stays_in():
    missing = OutputComparison(name="logits", shape=None, passed=False, atol=1e-5, rtol=1e-5,
                               error="output missing from tf")
    assert list(missing.to_dict()) == ["name", "shape", "passed", "atol", "rtol", "error"]
    assert missing.max_abs_diff is ABSENT and "max_abs_diff" not in missing and missing.get("max_abs_diff") is None
    crashed = FrameworkEntry.from_dict({**FrameworkEntry(class_name="BertModel").to_dict(),
                                        "signal": None, "returncode": 1, "timed_out": False})
    assert crashed.to_dict()["signal"] is None and "traceback" not in crashed.to_dict()
    with pytest.raises(KeyError):
        crashed["traceback"]


def test_unknown_keys_are_kept_in_the_parts_and_dropped_at_the_top():
    raw = json.loads(FIXTURES[0].read_text(encoding="utf-8"))
    raw["comparisons"][0]["outputs"][0]["future_metric"] = 3
    raw["frameworks"]["pt"]["future"] = {"x": 1}
    raw["future_top"] = 1
    out = Results.from_dict(raw).to_dict()
    assert list(out["comparisons"][0]["outputs"][0])[-1] == "future_metric"
    assert out["frameworks"]["pt"]["future"] == {"x": 1}
    assert "future_top" not in out


def test_results_built_from_plain_dicts_type_their_parts():
    entry = FrameworkEntry(class_name="BertModel").to_dict()
    res = Results(passed=True, exit_code=0, task="base", checkpoint={}, inputs={}, environment={}, config={},
                  frameworks={"pt": entry}, comparisons=[])
    assert isinstance(res.frameworks["pt"], FrameworkEntry) and res.frameworks["pt"]["status"] is None
    assert "schedule" not in res.to_dict() and "conversion" not in res.to_dict()
    res.schedule = {"parallel": False}
    assert list(res.to_dict())[-1] == "schedule" and list(res.to_dict())[0] == "schema_version"


def test_schema_doc_is_generated_from_the_code():
    doc = (ROOT / "docs" / "results-schema.md").read_text(encoding="utf-8")
    assert doc == schema_markdown(), "regenerate docs/results-schema.md (command at its top)"
    for cls in (Results, FrameworkEntry, LoadIssues, PairComparison, OutputComparison):
        assert f"## {cls.__name__}" in doc
