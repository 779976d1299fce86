"""The pytest plugin through pytester: declared checks, the marker, xdist, the report index.

Runs use pt and flax on the tiny fixtures (bert-pt passes; bert-flax-altered's
Flax weights have layer 1's query bias shifted, so pt-vs-flax fails at attentions.1).
"""

import json

import pytest

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]



def _plugin_args() -> tuple:
    """Load the plugin with -p unless its pytest11 entry point is installed (loading it twice is an error)."""
    from importlib.metadata import entry_points

    installed = any(ep.value == "parity.pytest_plugin" for ep in entry_points(group="pytest11"))
    return () if installed else ("-p", "parity.pytest_plugin")


PLUGIN = (*_plugin_args(), "-p", "no:cacheprovider")


def _run(pytester, *args):
    return pytester.runpytest_subprocess(*PLUGIN, *args, timeout=900)


def test_pyproject_checks_pass_and_fail(pytester, tiny):
    pytester.makepyprojecttoml(f"""
        [tool.parity]
        frameworks = ["pt", "flax"]
        [[tool.parity.checks]]
        name = "good"
        checkpoint = "{tiny / 'bert-pt'}"
        [[tool.parity.checks]]
        name = "altered"
        checkpoint = "{tiny / 'bert-flax-altered'}"
        tolerances = {{"attentions.*" = {{atol = 1e-4}}}}
    """)
    r = _run(pytester, "-v", "pyproject.toml")
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["*pyproject.toml::good?pt-vs-flax? PASSED*",
                            "*pyproject.toml::altered?pt-vs-flax? FAILED*"])
    out = r.stdout.str()
    # pytest's own failure section shows the pair table and the first divergence, not a traceback.
    assert "pt vs flax: FAIL" in out and "first divergence: attentions.1" in out
    assert "attentions.1           6x4x64x64" in out and "Traceback" not in out
    # the attentions.* pattern tolerance reached the comparison; other outputs keep 1e-5
    assert "attentions.1: Mismatched elements" in out and "(up to 0.0001 allowed)" in out


def test_parity_toml_report_index_and_marker_keys(pytester, tiny):
    pytester.makefile(".toml", parity=f"""
        frameworks = "pt,flax"
        [[checks]]
        name = "tiny"
        checkpoint = "{tiny / 'bert-pt'}"
        [[checks]]
        name = "altered"
        checkpoint = "{tiny / 'bert-flax-altered'}"
        outputs = "logits,hidden_states"
    """)
    report = pytester.path / "rep"
    r = _run(pytester, "parity.toml", "--parity-report-dir", str(report))
    r.assert_outcomes(passed=1, failed=1)
    out = r.stdout.str()
    # without attention maps, the first divergence is the output of layer 1
    assert "first divergence: hidden_states.2" in out
    index = json.loads((report / "index.json").read_text())
    assert index["counts"] == {"pass": 1, "fail": 1, "error": 0}
    by_check = {row["check"]: row for row in index["items"]}
    assert by_check["tiny"]["verdict"] == "pass" and by_check["tiny"]["pair"] == "pt-vs-flax"
    assert by_check["altered"]["first_divergence"] == "hidden_states.2"
    res = json.loads((report / by_check["altered"]["results"]).read_text())
    assert res["comparisons"][0]["first_divergence"] == "hidden_states.2" and not res["passed"]
    assert (report / "altered" / "console.txt").read_text().count("pt vs flax: FAIL") == 1
    md = (report / "index.md").read_text()
    assert "1 passed, 1 failed, 0 errors" in md and "hidden_states.2" in md
    # each check's HTML / Markdown / JUnit reports, and an index.html linking both reports
    for name in ("tiny", "altered"):
        assert {"report.html", "report.md", "junit.xml"} <= {p.name for p in (report / name).iterdir()}
    page = (report / "index.html").read_text()
    assert 'href="altered/report.html"' in page and 'href="tiny/report.html"' in page


def test_bad_declaration_is_one_clear_collection_error(pytester, tiny):
    pytester.makefile(".toml", parity=f"""
        [[checks]]
        checkpoint = "{tiny / 'bert-pt'}"
        atoll = 1e-3
    """)
    r = _run(pytester, "parity.toml")
    assert r.ret == pytest.ExitCode.INTERRUPTED
    r.stdout.fnmatch_lines(["*parity: error: unknown key 'atoll' in check 1 of parity.toml*Note: use only*"])


def test_marker_and_fixture(pytester, tiny):
    pytester.makeconftest(f"""
        import pytest

        @pytest.fixture(scope="session")
        def my_checkpoint():
            return "{tiny / 'bert-pt'}"
    """)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.parity(checkpoint="my_checkpoint", frameworks="pt,flax")
        def test_own_checkpoint(parity):
            logits = next(o for o in parity.results.comparisons[0]["outputs"] if o["name"] == "logits")
            assert logits["passed"] and logits["mismatched"] == 0 and logits["atol"] == 1e-5

        @pytest.mark.parity(checkpoint="{tiny / 'bert-flax-altered'}", frameworks="pt,flax")
        def test_altered():
            pass

        @pytest.mark.parity(checkpoint="my_checkpoint", framework="pt,flax")
        def test_typo():
            pass
    """)
    r = _run(pytester, "-p", "no:randomly", "--parity-inline")  # the plugin's in-process mode
    r.assert_outcomes(passed=1, failed=2)
    out = r.stdout.str()
    assert "first divergence: attentions.1" in out
    assert "parity: error: unknown key 'framework' in @pytest.mark.parity" in out


def test_xdist_two_workers_group_each_checkpoint(pytester, tiny):
    pytester.makefile(".toml", parity=f"""
        frameworks = "pt,tf,flax"
        [[checks]]
        name = "pt-weights"
        checkpoint = "{tiny / 'bert-pt'}"
        outputs = "logits,hidden_states"
        [[checks]]
        name = "tf-altered"
        checkpoint = "{tiny / 'bert-tf-altered'}"
        outputs = "logits,hidden_states"
    """)
    report = pytester.path / "rep"
    r = _run(pytester, "-n", "2", "--dist", "loadgroup", "parity.toml", "--parity-report-dir", str(report))
    # two pairs per check and nothing else: no stand-in item (tf-vs-flax) that every healthy run would skip
    r.assert_outcomes(passed=3, failed=1, skipped=0)
    rows = json.loads((report / "index.json").read_text())["items"]
    assert len(rows) == 4 and {r["worker"] for r in rows} <= {"gw0", "gw1"}
    for check in ("pt-weights", "tf-altered"):
        mine = [row for row in rows if row["check"] == check]
        # both pairs of one checkpoint ran on one worker, from one run of the check
        assert len({(row["worker"], row["pid"]) for row in mine}) == 1, mine
    failed = [row for row in rows if row["verdict"] == "fail"]
    assert [(f["check"], f["pair"], f["first_divergence"]) for f in failed] == [("tf-altered", "pt-vs-tf", "hidden_states.2")]


def test_gate_against_a_recorded_baseline(pytester, tiny):
    import subprocess
    import sys

    base = pytester.path / "golden"
    proc = subprocess.run([sys.executable, "-m", "parity", "record", str(tiny / "bert-pt"), "--out", str(base),
                           "--frameworks", "pt", "--outputs", "logits,hidden_states",
                           "--report-dir", str(pytester.path / "rec")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pytester.makefile(".toml", parity=f"""
        [[checks]]
        name = "golden"
        baseline = "golden"
        [[checks]]
        name = "golden-altered"
        baseline = "golden"
        checkpoint = "{tiny / 'bert-tf-altered'}"
    """)
    # bert-tf-altered's PyTorch weights are bert-pt's: only its TF file differs, so pt still matches
    r = _run(pytester, "-v", "parity.toml")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*parity.toml::golden?baseline-vs-pt? PASSED*"])
