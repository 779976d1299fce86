"""Commands with their defaults, as a new user runs them: a check that compares nothing is never a pass, the
defaults fit the model (--generate's prompt length, the pipeline's inputs), the default reference follows the
frameworks given, a baseline compares under transformers 5 without options, and default folders never collide."""

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parity.planning.config import default_reference

ROOT = Path(__file__).resolve().parent.parent


def test_a_check_that_compares_nothing_is_exit_3_in_every_report(cli, tiny, v5, tmp_path):
    """TF-only weights: transformers 5 converts nothing, so pt@v5 is unsupported and no pair is compared."""
    r = cli("check", tiny / "bert-tf", "--env", f"v5={v5}", "--frameworks", "tf,pt@v5", "--reference", "tf",
            "--format", "console,json,md,html,junit")
    assert r.code == 3, r.out + r.err
    res = r.results
    assert not res["passed"] and res["exit_code"] == 3 and res["comparisons"] == []
    assert res["frameworks"]["pt@v5"]["status"] == "unsupported"
    assert res["nothing_compared"].startswith("no pair was compared: pt@v5 unsupported")
    assert "no pair was compared: pt@v5 unsupported" in r.out and "verdict: FAIL (exit 3" in r.out
    md = (r.report_dir / "report.md").read_text()
    assert "PASS" not in md.splitlines()[0] and "FAIL (exit 3" in md
    assert "no pair was compared" in (r.report_dir / "report.html").read_text()
    suites = ET.parse(r.report_dir / "junit.xml").getroot()
    errors = [e.get("message") for e in suites.iter("error")]
    assert any(m.startswith("no pair was compared") for m in errors)


def test_default_reference_follows_the_frameworks():
    assert default_reference(["tf", "pt", "flax"]) == "pt"
    assert default_reference(["tf", "pt@v5"]) == "pt@v5"
    assert default_reference(["tf", "pt@v5:bf16"]) == "pt@v5:bf16"
    assert default_reference(["flax", "tf"]) == "flax"


def test_cross_environment_check_without_reference(cli, tiny, v5):
    """README's example: --frameworks tf,pt@v5 without --reference judges tf against pt@v5, and says so."""
    r = cli("check", tiny / "bert-pt", "--env", f"v5={v5}", "--frameworks", "tf,pt@v5")
    assert r.code == 0, r.out + r.err
    assert r.results["config"]["reference"] == "pt@v5"
    assert "chosen: --reference pt@v5: the default reference" in r.out
    assert "pt@v5 vs tf: PASS" in r.out


def test_generate_with_defaults_fits_the_prompt_to_the_positions(cli, gen):
    """A GPT-2 with 64 positions: the default --max-length (64) plus 20 new tokens does not fit; it is
    shortened and said, while a --max-length the user gave is still refused."""
    r = cli("check", gen / "gpt2-64", "--frameworks", "pt,tf", "--generate")
    assert r.code in (0, 1), r.out + r.err
    res = r.results
    assert res["config"]["max_length"] == 44 and res["inputs"]["shapes"]["input_ids"][1] <= 44
    assert res["config"]["chosen"]["max_length"].startswith("44: the model's 64 positions less 20 new tokens")
    assert "chosen: --max-length 44" in r.out
    assert res["generation"] and all(e.get("error") is None for e in res["generation"])
    refused = cli("check", gen / "gpt2-64", "--frameworks", "pt,tf", "--generate", "--max-length", "64")
    assert refused.code == 2 and "--max-length 64 plus --max-new-tokens 20 is longer" in refused.err


@pytest.mark.parametrize("name", ["gpt2", "bert-cls", "bert-tok"])
def test_pipeline_runs_on_the_built_in_texts(cli, gen, name):
    """The default texts include one longer than these models' 128 positions: the pipeline's inputs are
    truncated as the forward batch is (results.json says how many), and both sides produce outputs."""
    r = cli("check", gen / name, "--frameworks", "pt,tf", "--pipeline", "--max-new-tokens", "4")
    (entry,) = r.results["pipeline"]
    assert "error" not in entry, entry.get("error")
    assert entry["max_length"] <= 64 and entry["truncated"] >= 1
    assert r.code == (0 if entry["passed"] else 1)


def test_a_failing_pipeline_input_is_named():
    from parity.worker.pipelines import each

    def call(item):
        if "long" in item:
            raise IndexError("index out of range in self")
        return item.upper()

    assert each(call, ["a", "b"]) == ["A", "B"]
    with pytest.raises(RuntimeError, match=r"input 1 \('a long text'\): IndexError: index out of range in self"):
        each(call, ["short", "a long text"])


def test_a_pipeline_failing_on_every_side_is_the_checks_error_not_a_mismatch():
    from parity.numerics.behaviour import failed_everywhere
    from parity.numerics.pipelines_compare import compare

    both = compare("pt", "tf", {"error": "input 2 ('x'): IndexError"}, {"error": "input 2 ('x'): ValueError"},
                   tolerance=(1e-5, 1e-5))
    assert not both["passed"] and both["failed_everywhere"]
    assert "pt pipeline failed: input 2" in both["error"] and "tf pipeline failed: input 2" in both["error"]
    one = compare("pt", "tf", {"task": "text-classification", "inputs": ["x"], "outputs": [[]]},
                  {"error": "boom"}, tolerance=(1e-5, 1e-5))
    assert not one["passed"] and not one["failed_everywhere"]
    assert failed_everywhere([one, both]) and not failed_everywhere([one])


def test_compare_under_transformers_5_without_options(cli, tiny, v5, tmp_path):
    """A pt/tf/flax baseline recorded under 4.57, compared in the transformers 5 environment with no options:
    tf and flax are not in this environment (no failure), pt is judged against all three recordings."""
    base = tmp_path / "base"
    rec = cli("record", tiny / "bert-pt", "--frameworks", "pt,tf,flax", "--out", base)
    assert rec.code == 0, rec.out + rec.err
    out = tmp_path / "cmp"
    r = subprocess.run([v5, "-m", "parity", "compare", str(base), "--report-dir", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((out / "results.json").read_text())
    assert list(res["frameworks"]) == ["pt"] and res["passed"]
    assert [(c["reference"], c["candidate"], c["passed"]) for c in res["comparisons"]] == [
        ("baseline:pt", "pt", True), ("baseline:tf", "pt", True), ("baseline:flax", "pt", True)]
    assert "tf and flax recorded but not in this environment" in res["config"]["chosen"]["frameworks"]
    assert "baseline:tf vs pt: PASS" in r.stdout and "not in this environment" in r.stdout


def test_default_report_folders_do_not_collide(cli, tiny, tmp_path):
    from parity.cli import default_dir

    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    for folder in (a, b):
        shutil.copytree(tiny / "bert-pt", folder)
    assert default_dir(a) != default_dir(b) and Path(default_dir(a)).name.startswith("model-")
    assert default_dir(a) == default_dir(a) and Path(default_dir(a)).parent == Path("reports")
    r = cli("check", a, "--frameworks", "pt,flax", report=False)
    assert r.code == 0, r.out + r.err
    assert (tmp_path / default_dir(a) / "results.json").is_file()
    rec = cli("record", a, "--frameworks", "pt")
    assert rec.code == 0 and (tmp_path / default_dir(a, "-baseline") / "baseline.json").is_file(), rec.out + rec.err


def test_pool_start_makes_a_missing_socket_folder(tmp_path):
    sock = tmp_path / "no" / "such" / "pool.sock"
    run = [sys.executable, "-m", "parity", "pool"]
    started = subprocess.run(run + ["start", "--socket", str(sock)], capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        assert "Traceback" not in started.stderr and sock.exists()
    finally:
        subprocess.run(run + ["stop", "--socket", str(sock)], capture_output=True, timeout=60)
