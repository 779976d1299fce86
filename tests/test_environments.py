"""Frameworks from two Python environments in one check: TF and Flax under transformers 4.57 against
PyTorch under transformers 5 (.venv-v5, built by `make venv-v5`), record/compare across the boundary,
and every bad --env input."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parity.planning.config import load_project
from parity.numerics.diagnose import DRIFT_RATIO

ROOT = Path(__file__).resolve().parent.parent
slow = pytest.mark.slow


def _envs(results: dict) -> dict:
    return {fw: (e["environment"]["name"], e["environment"]["versions"]["transformers"])
            for fw, e in results["frameworks"].items()}


@slow
def test_tf_and_flax_under_4_against_pt_under_5(cli, tiny, v5):
    r = cli("check", tiny / "bert-pt", "--env", f"v5={v5}", "--frameworks", "pt@v5,tf,flax",
            "--reference", "pt@v5", "--explain")
    assert r.code == 0, r.out + r.err
    res = r.results
    envs = _envs(res)
    assert envs["pt@v5"][0] == "v5" and envs["pt@v5"][1].startswith("5.")
    assert envs["tf"] == envs["flax"] == (None, res["environment"]["versions"]["transformers"])
    assert envs["tf"][1].startswith("4.")
    assert res["frameworks"]["pt@v5"]["environment"]["python"] == v5
    # attentions are compared: eager attention in float32, recorded
    assert res["frameworks"]["pt@v5"]["settings"] == {"dtype": "float32", "attn_implementation": "eager"}
    assert [(c["reference"], c["candidate"], c["passed"]) for c in res["comparisons"]] == \
        [("pt@v5", "tf", True), ("pt@v5", "flax", True)]
    # the float64 oracle ran in the v5 worker; weights were compared across the environments
    assert res["diagnosis"]["oracle"]["framework"] == "pt@v5"
    for pair in res["diagnosis"]["pairs"]:
        assert pair["weight_diff"]["counts"]["differing"] == 0
    assert "environments:" in r.out and f"v5 (pt@v5): {v5}" in r.out


@slow
def test_drifted_tf_against_pt_under_5_names_the_layer_and_side(cli, tiny, v5):
    # tf_model.h5 has layer 1's FFN kernel scaled by 1.01; pt@v5 loads the intact model.safetensors.
    r = cli("check", tiny / "bert-tf-altered", "--env", f"v5={v5}", "--frameworks", "pt@v5,tf",
            "--reference", "pt@v5", "--explain")
    assert r.code == 1, r.out + r.err
    comp = r.comparison("tf")
    assert comp["reference"] == "pt@v5" and comp["first_divergence"] == "hidden_states.2"
    pair = r.results["diagnosis"]["pairs"][0]
    assert pair["side"]["drifted"] == "tf" and pair["side"]["oracle"] == "pt@v5"
    d = pair["side"]["distance"]
    assert d["tf"] > DRIFT_RATIO * d["pt@v5"]
    bad = pair["weight_diff"]["differing"]
    assert len(bad) == 1 and bad[0]["name"].endswith("encoder.layer.1.intermediate.dense.weight")
    assert "Which side: tf drifted" in r.out


@slow
def test_minilm_under_5_against_4_in_every_framework(cli, minilm, v5):
    """Did the upgrade change the real model's outputs (pt vs pt@v5), and do TF and Flax under 4.57
    agree with PyTorch under 5?"""
    r = cli("check", minilm, "--env", f"v5={v5}", "--frameworks", "pt@v5,pt,tf,flax", "--reference", "pt@v5")
    assert r.code == 0, r.out + r.err
    assert {c["candidate"]: c["passed"] for c in r.results["comparisons"]} == {"pt": True, "tf": True, "flax": True}
    # the batch is built once, by the parent: every environment saw the same token ids
    assert r.results["inputs"]["source"] == "tokenizer"


@slow
def test_frameworks_transformers_5_lacks_are_unavailable_with_the_reason(cli, tiny, v5):
    r = cli("check", tiny / "bert-pt", "--env", f"v5={v5}", "--frameworks", "pt@v5,tf@v5,flax@v5",
            "--reference", "pt@v5")
    assert r.code == 3, r.out + r.err
    fws = r.results["frameworks"]
    assert fws["pt@v5"]["status"] == "ok"
    for key, label in (("tf@v5", "TensorFlow"), ("flax@v5", "Flax")):
        assert fws[key]["status"] == "unavailable"
        assert f"has no {label} classes (transformers 5 removed TF and Flax" in fws[key]["error"]
        assert "(environment v5)" in fws[key]["error"]


@slow
def test_record_under_4_and_compare_under_5(cli, tiny, v5, tmp_path):
    base = tmp_path / "baseline"
    rec = cli("record", tiny / "bert-pt", "--frameworks", "pt,tf,flax", "--out", base,
              "--report-dir", tmp_path / "rec")
    assert rec.code == 0, rec.out + rec.err
    for argv, reference in ((["--frameworks", "pt"], "baseline:pt"),
                            (["--frameworks", "pt", "--against", "tf"], "baseline:tf")):
        out = tmp_path / reference.replace(":", "-")
        proc = subprocess.run([v5, "-m", "parity", "compare", str(base), *argv, "--report-dir", str(out)],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        res = json.loads((out / "results.json").read_text())
        assert res["environment"]["versions"]["transformers"].startswith("5.")
        assert [(c["reference"], c["candidate"], c["passed"]) for c in res["comparisons"]] == [(reference, "pt", True)]
        assert "now: transformers 5." in proc.stdout


def _wrapper(tmp_path: Path, name: str, body: str) -> Path:
    f = tmp_path / name
    f.write_text("#!/bin/sh\n" + body + "\n")
    f.chmod(0o755)
    return f


def _bad(cli, tiny, tmp_path, python, *more) -> tuple:
    out = tmp_path / "never"
    r = cli("check", tiny / "bert-pt", "--env", f"v5={python}", "--frameworks", "pt,pt@v5", *more,
            "--report-dir", out)
    assert r.code == 2 and "Traceback" not in r.err, r.out + r.err
    assert not out.exists()  # nothing half-written
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "Note:" in line
    return line


def test_bad_interpreters_are_refused_before_any_worker(cli, tiny, tmp_path):
    assert "does not exist" in _bad(cli, tiny, tmp_path, tmp_path / "nope" / "python")
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    assert "is not an executable file" in _bad(cli, tiny, tmp_path, plain)
    shell = _wrapper(tmp_path, "shell", "echo hello")
    assert "is not a Python 3 interpreter (it said: hello)" in _bad(cli, tiny, tmp_path, shell)
    # the base interpreter in isolated mode: Python without parity (and without this venv's packages)
    bare = _wrapper(tmp_path, "bare", f'exec {sys._base_executable} -I "$@"')
    line = _bad(cli, tiny, tmp_path, bare)
    assert "has no parity installed" in line and "pip install --no-deps -e" in line


def test_a_parity_speaking_another_protocol_is_refused(cli, tiny, tmp_path):
    fake = tmp_path / "old" / "parity"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "environments.py").write_text(textwrap.dedent("""
        def describe():
            return {"python_version": "3.11", "executable": "x", "protocol": 1,
                    "versions": {"parity": "0.0.1"}, "transformers": None, "unavailable": {}}
    """))
    # -E ignores PYTHONPATH; -c puts the current folder first on sys.path, so the old parity is found
    old = _wrapper(tmp_path, "old-python", f'cd {fake.parent} && exec {sys._base_executable} -E -s "$@"')
    line = _bad(cli, tiny, tmp_path, old)
    from parity.contracts.protocol import VERSION

    assert f"speaks worker protocol 1, this parity {VERSION}" in line and "pip install --no-deps -e" in line


def test_undeclared_environment_and_bad_declarations(cli, tiny, tmp_path):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,pt@v6", "--report-dir", tmp_path / "x")
    assert r.code == 2 and "no environment 'v6' is declared" in r.err and "--env v6=" in r.err
    r = cli("check", tiny / "bert-pt", "--env", "v5", "--frameworks", "pt,pt@v5", "--report-dir", tmp_path / "x")
    assert r.code == 2 and "is not NAME=PYTHON" in r.err
    r = cli("check", tiny / "bert-pt", "--env", f"v5={sys.executable}", "--frameworks", "pt,pt@v5", "--inline",
            "--report-dir", tmp_path / "x")
    assert r.code == 2 and "--inline" in r.err
    assert not (tmp_path / "x").exists()


def test_env_table_in_parity_toml_is_relative_to_the_file(tmp_path):
    (tmp_path / "parity.toml").write_text(textwrap.dedent("""
        env = {v5 = ".venv-v5/bin/python"}
        [[checks]]
        checkpoint = "ckpt"
        frameworks = "tf,pt@v5"
        reference = "pt@v5"
    """))
    _, checks = load_project(tmp_path)
    assert checks[0]["env"] == {"v5": str(tmp_path / ".venv-v5" / "bin" / "python")}
    from parity.planning.config import from_entry

    cfg = from_entry(checks[0])
    assert cfg.frameworks == ["tf", "pt@v5"] and cfg.reference == "pt@v5"
    assert cfg.envs == checks[0]["env"]
