"""Golden baselines: `parity record` then `parity compare`, through the real CLI."""

import json
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recorded(tiny, tmp_path_factory):
    """bert-pt recorded with pt and flax (one CLI run shared by the tests below)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("baseline")
    ckpt = root / "bert-pt"
    shutil.copytree(tiny / "bert-pt", ckpt)
    proc = subprocess.run([sys.executable, "-m", "parity", "record", str(ckpt), "--out", str(root / "base"),
                           "--frameworks", "pt,flax", "--report-dir", str(root / "rec")],
                          cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, proc.stdout


def test_record_prints_estimate_first_and_stores_float32(recorded):
    root, out = recorded
    first = out.splitlines()[0]
    assert first.startswith("baseline size estimate: 2.6 MB (2 framework(s)"), first
    base = root / "base"
    meta = json.loads((base / "baseline.json").read_text())
    assert meta["schema_version"] == 1 and meta["kind"] == "parity-baseline"
    assert meta["environment"]["versions"]["transformers"].startswith("4.")
    assert set(meta["frameworks"]) == {"pt", "flax"}
    with np.load(base / "outputs-pt.npz") as z:
        assert z.files == meta["frameworks"]["pt"]["outputs"]
        assert {z[k].dtype for k in z.files} == {np.dtype("float32")}
        assert z["logits"].shape == (6, 3)
    with np.load(base / "inputs.npz") as z:
        assert z["input_ids"].shape == (6, 64)
    written = sum(f.stat().st_size for f in base.iterdir())
    assert 0.9 < written / (2.6 * 2**20) < 1.1  # the estimate is within 10%


def test_compare_unchanged_passes_exactly(recorded, cli):
    root, _ = recorded
    r = cli("compare", root / "base", "--frameworks", "pt", "--report-dir", root / "cmp-same")
    assert r.code == 0, r.out + r.err
    (comp,) = r.results["comparisons"]
    assert (comp["reference"], comp["candidate"], comp["passed"]) == ("baseline:pt", "pt", True)
    assert len(comp["outputs"]) == 8 and max(o["max_abs_diff"] for o in comp["outputs"]) == 0.0
    assert "baseline:pt vs pt: PASS" in r.out


def test_changed_checkpoint_fails_at_the_changed_layer(recorded, cli, tmp_path):
    from safetensors.numpy import load_file, save_file

    root, _ = recorded
    changed = tmp_path / "bert-pt-changed"
    shutil.copytree(root / "bert-pt", changed)
    weights = load_file(changed / "model.safetensors")
    key = "bert.encoder.layer.1.intermediate.dense.weight"
    weights[key] = weights[key] * np.float32(1.05)
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})
    r = cli("compare", root / "base", "--frameworks", "pt", "--checkpoint", changed, "--report-dir", tmp_path / "c")
    assert r.code == 1, r.out + r.err
    (comp,) = r.results["comparisons"]
    # layer 1's FFN changed: its attention map and input still match, its output does not
    assert comp["first_divergence"] == "hidden_states.2"
    rows = {o["name"]: o for o in comp["outputs"]}
    assert rows["attentions.1"]["passed"] and rows["hidden_states.1"]["max_abs_diff"] == 0.0
    assert rows["hidden_states.2"]["max_abs_diff"] > 1e-3
    assert "note: the checkpoint changed since recording" in r.out
    assert "first divergence: hidden_states.2" in r.out


def test_outputs_limits_what_is_kept(tiny, cli, tmp_path):
    r = cli("record", tiny / "bert-pt", "--out", tmp_path / "b", "--frameworks", "pt", "--outputs", "logits",
            "--inline", "--report-dir", tmp_path / "r")
    assert r.code == 0, r.out + r.err
    assert r.out.splitlines()[0].startswith("baseline size estimate: 72 B (1 framework(s) x outputs logits")
    with np.load(tmp_path / "b" / "outputs-pt.npz") as z:
        assert z.files == ["logits"]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b.joinpath("baseline.json").write_text(
        b.joinpath("baseline.json").read_text().replace('"schema_version": 1', '"schema_version": 2')),
     "baseline schema_version 2 is newer than this parity understands (1). Note: upgrade parity"),
    (lambda b: b.joinpath("baseline.json").write_text("{not json"), "is corrupt (not valid JSON"),
    (lambda b: b.joinpath("outputs-pt.npz").write_bytes(b"PK\x03\x04garbage"), "outputs-pt.npz is corrupt"),
    (lambda b: b.joinpath("inputs.npz").unlink(), "is incomplete (inputs.npz is missing)"),
])
def test_newer_or_corrupt_baseline_is_one_clear_line(recorded, cli, tmp_path, damage, message):
    root, _ = recorded
    base = tmp_path / "base"
    shutil.copytree(root / "base", base)
    damage(base)
    r = cli("compare", base, "--frameworks", "pt", "--report-dir", tmp_path / "out")
    assert r.code == 2, r.out + r.err
    assert r.err.count("\n") == 1 and r.err.startswith("parity: error: ") and message in r.err, r.err
    assert "Traceback" not in r.err and not (tmp_path / "out").exists()


def test_compare_unrecorded_framework_is_refused(recorded, cli):
    root, _ = recorded
    r = cli("compare", root / "base", "--frameworks", "tf")
    assert r.code == 2 and "the baseline has no tf outputs (recorded: pt, flax)" in r.err


def test_baseline_inputs_that_do_not_fit_the_checkpoint_are_refused(recorded, cli, tiny, tmp_path):
    root, _ = recorded
    other = tmp_path / "small-vocab"
    shutil.copytree(tiny / "bert-pt", other)
    config = json.loads((other / "config.json").read_text())
    config["vocab_size"] = 10
    (other / "config.json").write_text(json.dumps(config))
    r = cli("compare", root / "base", "--checkpoint", other, "--frameworks", "pt", "--report-dir", tmp_path / "out")
    assert r.code == 2, r.out + r.err
    assert r.err.count("\n") == 1 and "is outside its vocabulary of 10. Note: pass --checkpoint" in r.err, r.err
    assert "Traceback" not in r.err and not (tmp_path / "out").exists()


def test_compare_with_a_failing_framework_still_compares_the_others(recorded, cli, tmp_path):
    """pt dies while loading: flax is still judged against its own recording; exit 3 for the fault."""
    root, _ = recorded
    r = cli("compare", root / "base", "--report-dir", tmp_path / "c", env={"PARITY_TEST_FAULT": "pt:kill@load"})
    assert r.code == 3, r.out + r.err
    assert r.results["frameworks"]["pt"]["status"] == "crashed"
    (comp,) = r.results["comparisons"]
    assert (comp["reference"], comp["candidate"], comp["passed"]) == ("baseline:flax", "flax", True)
    assert "reference_used" not in r.results  # each framework has its own recording: nothing stands in
