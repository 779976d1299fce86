"""When the reference framework cannot produce outputs, the others are still compared (issue 22)."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from parity.report.write import render

pytestmark = pytest.mark.xdist_group("reference-fallback")


def _assert_reports_say_it(results: dict, stand_in: str, requested: str):
    line = f"reference: {stand_in} stands in for {requested}"
    for fmt in ("console", "md", "html", "junit"):
        assert line in render(results, fmt), fmt


def test_reference_killed_mid_load_the_others_compare(cli, tiny):
    """pt dies while loading; tf (next in --frameworks) stands in: the 1% TF drift still fails at its layer."""
    r = cli("check", tiny / "bert-tf-altered", "--frameworks", "pt,tf,flax", "--explain",
            env={"PARITY_TEST_FAULT": "pt:kill@load"})
    assert r.code == 3, r.out + r.err
    res = r.results
    assert res["frameworks"]["pt"]["status"] == "crashed"
    used = res["reference_used"]
    assert used["requested"] == "pt" and used["framework"] == "tf"
    assert used["reason"].startswith("pt crashed: worker died (SIGKILL")
    [comp] = res["comparisons"]
    assert (comp["reference"], comp["candidate"]) == ("tf", "flax")
    assert not comp["passed"] and comp["first_divergence"] == "hidden_states.2"
    rows = {o["name"]: o for o in comp["outputs"]}
    assert rows["attentions.1"]["passed"] and rows["hidden_states.1"]["passed"]
    # --explain on the stand-in pair; no float64 oracle without PyTorch
    [pair] = res["diagnosis"]["pairs"]
    assert (pair["reference"], pair["candidate"]) == ("tf", "flax")
    assert pair["first_divergence"] == "hidden_states.2"
    assert "reference: tf stands in for pt (pt crashed" in r.out
    assert "tf vs flax: FAIL" in r.out and "verdict: FAIL (exit 3" in r.out
    _assert_reports_say_it(res, "tf", "pt")


def test_reference_unavailable_the_others_compare(tiny, tmp_path, monkeypatch):
    """A reference whose framework is not installed: unavailable, and tf vs flax still passes."""
    from parity import api
    from parity.contracts import registry, versions

    real = versions.unavailable_reason
    monkeypatch.setattr(versions, "unavailable_reason",
                        lambda key: "torch not installed" if registry.base(key) == "pt" else real(key))
    res = api.check(str(tiny / "bert-pt"), frameworks="pt,tf,flax", report_dir=str(tmp_path / "r")).to_dict()
    assert res["exit_code"] == 3 and not res["passed"]
    assert res["frameworks"]["pt"]["status"] == "unavailable"
    assert res["reference_used"] == {"requested": "pt", "framework": "tf",
                                     "reason": "pt unavailable: torch not installed"}
    [comp] = res["comparisons"]
    assert (comp["reference"], comp["candidate"], comp["passed"]) == ("tf", "flax", True)
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert saved["reference_used"]["framework"] == "tf"
    _assert_reports_say_it(res, "tf", "pt")


def _refused_pt_weights(tiny, folder):
    """TF and Flax weights intact; model.safetensors with one tensor of the wrong shape, which PyTorch refuses."""
    from safetensors.numpy import load_file, save_file

    folder.mkdir()
    for src in ("bert-tf", "bert-flax"):
        for f in (tiny / src).iterdir():
            if not (folder / f.name).exists():
                shutil.copy(f, folder / f.name)
    state = load_file(str(tiny / "bert-pt" / "model.safetensors"))
    name = "bert.encoder.layer.1.intermediate.dense.bias"
    state[name] = state[name][:-1]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_reference_refusing_its_weights_the_others_compare(cli, tiny, tmp_path):
    ckpt = _refused_pt_weights(tiny, tmp_path / "ckpt")
    r = cli("check", ckpt, "--frameworks", "pt,tf,flax")
    assert r.code == 3, r.out + r.err
    res = r.results
    assert res["frameworks"]["pt"]["status"] == "error" and "size mismatch" in res["frameworks"]["pt"]["error"]
    assert res["frameworks"]["tf"]["converted_from"] is None and res["frameworks"]["flax"]["converted_from"] is None
    assert res["reference_used"]["framework"] == "tf" and res["reference_used"]["reason"].startswith("pt error")
    [comp] = res["comparisons"]
    assert (comp["reference"], comp["candidate"], comp["passed"]) == ("tf", "flax", True)
    assert "reference: tf stands in for pt (pt error" in r.out


def test_no_stand_in_when_the_reference_runs(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,flax")
    assert r.code == 0
    assert r.results["reference_used"] == {"requested": "pt", "framework": "pt", "reason": None}
    assert "stands in" not in r.out


def test_plugin_fails_the_lost_pairs_and_reports_the_stand_in_pair(tiny, tmp_path):
    """pt killed: pt-vs-tf and pt-vs-flax fail with the fault, and pt-vs-flax shows the stand-in pair tf vs
    flax failing at the TF drift. No stand-in item is collected (it would be skipped in every healthy run)."""
    (tmp_path / "parity.toml").write_text(textwrap.dedent(f"""
        [[checks]]
        name = "drift"
        checkpoint = "{tiny / 'bert-tf-altered'}"
        frameworks = "pt,tf,flax"
    """))
    run = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "parity.toml"]
    env_kill = {**__import__("os").environ, "PARITY_TEST_FAULT": "pt:kill@load"}
    r = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env_kill, timeout=900)
    out = r.stdout + r.stderr
    assert "FAILED parity.toml::drift[pt-vs-tf]" in out and "FAILED parity.toml::drift[pt-vs-flax]" in out
    assert "drift[tf-vs-flax]" not in out
    assert "pt vs tf: not compared (pt crashed" in out and "tf stands in for pt:" in out
    assert "tf vs flax: FAIL" in out and "first divergence: hidden_states.2" in out and "2 failed" in out
