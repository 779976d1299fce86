"""`parity convert` through the CLI: round trips for text, vision and seq2seq, altered outputs, bad input."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_within_tolerance

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def convert_models() -> Path:
    """fixtures/convert_models.py's tiny ViT and BART, built once per machine (locked for xdist)."""
    cache = ROOT / ".cache" / "convert-fixtures"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / hashlib.sha256((ROOT / "fixtures" / "convert_models.py").read_bytes()).hexdigest()[:12]
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "DONE").exists():
            tmp = target.with_name(target.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "fixtures.convert_models", str(tmp)], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (tmp / "DONE").write_text("ok")
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    return target


def _convert(cli, src, out, to, *extra):
    r = cli("convert", src, out, "--to", to, *extra)
    res = json.loads((Path(out) / "results.json").read_text()) if (Path(out) / "results.json").exists() else None
    return r, res


def _assert_reproduces(r, res, src, to, n_weights, n_outputs):
    assert r.code == 0, r.out + r.err
    # The output check prints as lines of its own, not as one escaped line ("\x0a" for each newline).
    assert "\\x0a" not in r.out and "\n  framework status" in r.out, r.out
    conv = res["conversion"]
    assert res["passed"] and res["exit_code"] == 0 and res["schema_version"] == 1
    assert (conv["from"], conv["to"]) == (src, to) and conv["outputs_passed"]
    w = conv["weights"]
    # Conversion copies numbers: every tensor identical, none missing or extra.
    assert w["passed"] and w["identical"] == w["reference_count"] == w["candidate_count"] == n_weights, w
    assert w["max_abs_diff"] == 0.0
    [comp] = res["comparisons"]
    assert (comp["reference"], comp["candidate"]) == (src, to) and comp["passed"]
    # past_key_values: compared where both frameworks return the cache (pt, tf), listed as not compared
    # where one does not (Flax returns it only when decoding with init_cache)
    assert len([o for o in comp["outputs"] if not o["name"].startswith("past_key_values.")]) == n_outputs
    for o in comp["outputs"]:
        assert_within_tolerance(o)
    fws = res["frameworks"]
    assert fws[src]["converted_from"] is None and fws[to]["converted_from"] is None  # both loaded natively
    assert "weights: PASS" in r.out and "verdict: PASS" in r.out


WEIGHTS_FILE = {"pt": "model.safetensors", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}

# model -> (task option, tensors in the export, outputs compared)
MODELS = {
    "bert": ([], 57, 8),                                    # text: tokenizer, sequence classification
    "vit": ([], 40, 6),                                     # vision: seeded pixel_values
    "bart": (["--task", "seq2seq-lm"], 92, 14),             # seq2seq: encoder, decoder, cross-attention
}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_round_trips(cli, tiny, convert_models, tmp_path, model):
    """pt -> tf -> pt and pt -> flax -> pt, each step proved against its source."""
    task, n_weights, n_outputs = MODELS[model]
    src = tiny / "bert-pt" if model == "bert" else convert_models / f"{model}-pt"
    for mid in ("tf", "flax"):
        out1, out2 = tmp_path / f"{model}-{mid}", tmp_path / f"{model}-{mid}-pt"
        r, res = _convert(cli, src, out1, mid, *task)
        _assert_reproduces(r, res, "pt", mid, n_weights, n_outputs)
        files = {p.name for p in out1.iterdir()}
        assert WEIGHTS_FILE[mid] in files and "model.safetensors" not in files and "config.json" in files
        assert (out1 / "config.json").read_bytes() == (src / "config.json").read_bytes()
        if model == "bert":  # tokenizer files travel with the weights
            assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= files
        r, res = _convert(cli, out1, out2, "pt", *task)   # --from auto: the only weights out1 has
        _assert_reproduces(r, res, mid, "pt", n_weights, n_outputs)
        assert {p.name for p in out2.iterdir()} >= {"model.safetensors", "config.json", "results.json"}
    if model == "bart":
        # transformers' TF -> PyTorch converter leaves buffers at init (final_logits_bias = 0); parity copies them.
        notes = json.loads((tmp_path / "bart-tf-pt" / "results.json").read_text())["conversion"]["load"]["notes"]
        assert any("final_logits_bias" in n for n in notes), notes


@pytest.mark.slow
def test_tf_to_flax_goes_through_pytorch(cli, tiny, tmp_path):
    r, res = _convert(cli, tiny / "bert-tf", tmp_path / "bert-flax", "flax")
    _assert_reproduces(r, res, "tf", "flax", 57, 8)
    assert res["conversion"]["converted_via"] == "pt"


@pytest.mark.slow
def test_altered_after_conversion_is_caught(cli, tiny, tmp_path):
    """Change one tensor of the converted checkpoint; --verify names it and fails (exit 1)."""
    import h5py

    out = tmp_path / "bert-tf"
    r, res = _convert(cli, tiny / "bert-pt", out, "tf")
    assert r.code == 0, r.out + r.err
    with h5py.File(out / "tf_model.h5", "r+") as f:
        names = []
        f.visit(lambda n: names.append(n) if n.endswith("layer_._1/intermediate/dense/kernel:0") else None)
        [name] = names
        f[name][...] = f[name][...] * 1.05
    r, res = _convert(cli, tiny / "bert-pt", out, "tf", "--verify")
    assert r.code == 1, r.out + r.err
    w = res["conversion"]["weights"]
    assert not res["passed"] and res["conversion"]["verify_only"] and not w["passed"]
    assert [d["name"] for d in w["differing"]] == ["bert.encoder.layer.1.intermediate.dense.weight"]
    assert w["identical"] == 56 and w["differing"][0]["max_abs_diff"] > 1e-4
    assert res["comparisons"][0]["first_divergence"] == "hidden_states.2"
    assert "differing  bert.encoder.layer.1.intermediate.dense.weight" in r.out and "verdict: FAIL" in r.out

    # The same for a PyTorch checkpoint converted from TF: one value of the classifier bias changed.
    from safetensors.numpy import load_file, save_file

    back = tmp_path / "bert-tf-pt"
    assert _convert(cli, out, back, "pt")[0].code == 0  # converting the altered TF reproduces it exactly
    tensors = load_file(back / "model.safetensors")
    tensors["classifier.bias"] = tensors["classifier.bias"] + np.float32(0.01)
    save_file(tensors, str(back / "model.safetensors"), metadata={"format": "pt"})
    r, res = _convert(cli, out, back, "pt", "--verify")
    assert r.code == 1
    assert [d["name"] for d in res["conversion"]["weights"]["differing"]] == ["classifier.bias"]
    assert res["comparisons"][0]["first_divergence"] == "logits"


# Bad input: exit 2, one line with a Note:, nothing written.
def _bad_cases(tiny, tmp):
    full = tmp / "full"
    full.mkdir()
    (full / "x").write_text("x")
    (tmp / "file").write_text("x")
    return [
        ([tiny / "bert-pt", tmp / "o", "--to", "pt"], "holds only pt weights"),
        ([tiny / "bert-pt", tmp / "o", "--to", "tf", "--from", "tf"], "has no tf weights"),
        ([tiny / "bert-tf-altered", tmp / "o", "--to", "pt", "--from", "pt"], "source and target are both pt"),
        ([tiny / "bert-pt", tmp / "o", "--to", "mxnet"], "unknown framework 'mxnet' for --to"),
        ([tiny / "bert-pt", full, "--to", "tf"], "exists and is not empty"),
        ([tiny / "bert-pt", tmp / "file", "--to", "tf"], "is a file"),
        ([tiny / "bert-pt", tiny / "bert-pt", "--to", "tf", "--force"], "is the source checkpoint itself"),
        ([tiny / "bert-pt", tmp / "o", "--to", "tf", "--verify"], "does not exist"),
        ([tiny / "bert-pt", tmp / "o", "--to", "tf", "--weights-atol", "-1"], "must be a finite non-negative"),
        ([tiny / "bert-pt", tmp / "o", "--to", "tf", "--task", "image-classification"], "image-classification"),
        ([tmp / "nope", tmp / "o", "--to", "tf"], "does not exist"),
        ([tiny / "bert-pt", tmp / "o"], "--to"),
    ]


def test_bad_input(cli, tiny, tmp_path):
    cases = _bad_cases(tiny, tmp_path)
    for args, expect in cases:
        r = cli("convert", *args)
        lines = r.err.strip().splitlines()
        assert r.code == 2, (args, r.out, r.err)
        assert len(lines) == 1 and lines[0].startswith("parity: error: ") and "Note: " in lines[0], r.err
        assert expect in lines[0], (expect, lines[0])
        assert "Traceback" not in r.err
        assert not (tmp_path / "o").exists()
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["x"]
    assert not [p for p in tiny.iterdir() if p.name.startswith(".")]  # no temp folder left beside the source


@pytest.mark.slow
def test_transformers_tf_to_pt_drops_buffers_and_parity_copies_them(convert_models, tmp_path):
    """Finding in transformers 4.57: its TF -> PyTorch converter loads parameters only, so
    BART's final_logits_bias (a buffer in PyTorch, a weight in TF) stays zero. If this starts
    failing on the first assert, transformers fixed it and parity's buffer copy can go."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import torch
    from transformers import BartForConditionalGeneration, TFBartForConditionalGeneration
    from transformers.modeling_tf_pytorch_utils import load_tf2_checkpoint_in_pytorch_model

    from parity.worker.runners.workarounds.pt_conversion import convert_to_pt

    src = convert_models / "bart-pt"
    TFBartForConditionalGeneration.from_pretrained(src, from_pt=True).save_pretrained(tmp_path)
    shutil.copy(src / "config.json", tmp_path / "config.json")
    expected = BartForConditionalGeneration.from_pretrained(src).final_logits_bias
    assert float(expected.abs().max()) > 0.1

    config = BartForConditionalGeneration.config_class.from_pretrained(src)
    library = load_tf2_checkpoint_in_pytorch_model(BartForConditionalGeneration(config), str(tmp_path / "tf_model.h5"))
    assert float(library.final_logits_bias.abs().max()) == 0.0          # the library's path: still zeros

    model, _, note = convert_to_pt(BartForConditionalGeneration, str(tmp_path), "tf_model.h5", "tf")
    assert torch.equal(model.final_logits_bias, expected) and "final_logits_bias" in note
