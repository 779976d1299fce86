"""Issue 20's edge inputs: rows with nothing to compare, and weights that are not finite or not float32."""

from __future__ import annotations

import numpy as np
import pytest

from parity.numerics.compare import compare_pair, empty_rows, rows_kept, valid_mask
from parity.report.console import mismatch_message

TOL = lambda name: (1e-5, 1e-5)  # noqa: E731


def _mask():
    """Three rows of four tokens: full, padded from position 2, all padding."""
    return np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])


def test_rows_that_are_all_padding_are_found():
    assert empty_rows(_mask()) == [2]
    assert empty_rows(np.ones((2, 3))) == [] and rows_kept(np.ones((2, 3))) is None
    choices = np.ones((2, 2, 3))
    choices[1, 0] = 0
    assert empty_rows(choices) == [[1, 0]]
    # a decoder row with nothing to compare drops the row too
    assert empty_rows({"encoder": np.ones((2, 3)), "decoder": np.array([[1, 1], [0, 0]])}) == [1]


def test_per_row_outputs_exclude_the_empty_rows():
    mask = _mask()
    logits = valid_mask("logits", (3, 2), mask)
    assert logits.tolist() == [[True, True], [True, True], [False, False]]
    pooled = valid_mask("pooler_output", (3, 8), mask)
    assert pooled[:2].all() and not pooled[2].any()
    hidden = valid_mask("hidden_states.1", (3, 4, 8), mask)
    assert hidden[0].all() and hidden[1, :2].all() and not hidden[1, 2:].any() and not hidden[2].any()
    assert valid_mask("logits", (3, 2), np.ones((3, 4))) is None  # no empty row: counted everywhere, as before
    assert valid_mask("vision_model_output.pooler_output", (3, 8), mask) is None  # the image is real
    choices = np.ones((2, 2, 3))
    choices[1, 0] = 0
    assert valid_mask("logits", (2, 2), choices).tolist() == [[True, True], [False, True]]
    flat = valid_mask("hidden_states.0", (4, 3, 5), choices)  # the model flattens (batch, choices)
    assert not flat[2].any() and flat[[0, 1, 3]].all()


def _outputs(rng):
    return {"hidden_states.1": rng.standard_normal((3, 4, 8)).astype(np.float32),
            "logits": rng.standard_normal((3, 2)).astype(np.float32)}


def test_nan_in_an_empty_row_never_poisons_the_verdict():
    """One framework gives NaN for the all-padding row, the other finite but different values:
    excluded and reported apart (``padded``), the pair passes."""
    ref = _outputs(np.random.default_rng(0))
    cand = {k: v.copy() for k, v in ref.items()}
    cand["logits"][2] = np.nan
    cand["hidden_states.1"][2] = np.nan
    ref["logits"][2] += 1.0
    pair = compare_pair("pt", "tf", ref, cand, list(ref), tolerance=TOL, attention_mask=_mask())
    assert pair.passed and pair.first_divergence is None
    rows = {r.name: r for r in pair.outputs}
    logits = rows["logits"]
    assert logits.masked and logits.total == 4 and logits.nonfinite == {"reference": 0, "candidate": 0}
    assert logits.padded == {"positions": 2, "max_abs_diff": None, "nonfinite": 2}
    hidden = rows["hidden_states.1"]
    assert hidden.total == (4 + 2) * 8 and hidden.padded["nonfinite"] == 4 * 8
    assert pair.token_error["nonfinite"] == []


def test_nan_on_a_real_position_fails_with_its_location():
    ref = _outputs(np.random.default_rng(1))
    cand = {k: v.copy() for k, v in ref.items()}
    cand["logits"][1, 1] = np.nan      # a real row
    cand["logits"][2, 0] = np.nan      # the empty row: not counted
    cand["hidden_states.1"][1, 1, 3] = np.inf  # a real token of the padded row
    pair = compare_pair("pt", "flax", ref, cand, list(ref), tolerance=TOL, attention_mask=_mask())
    assert not pair.passed and pair.first_divergence == "hidden_states.1"
    rows = {r.name: r for r in pair.outputs}
    assert rows["logits"].worst_index == [1, 1] and rows["logits"].nonfinite == {"reference": 0, "candidate": 1}
    assert rows["logits"].mismatched == 1 and rows["logits"].required_atol is None
    assert rows["hidden_states.1"].worst_index == [1, 1, 3]
    assert pair.token_error["output"] == "hidden_states.1" and pair.token_error["nonfinite"] == [[1, 1]]
    message = mismatch_message(rows["logits"].to_dict())
    assert "NaN/Inf: 0 in reference, 1 in candidate, first at index (1, 1)" in message
    assert "Greatest absolute difference: 0 (up to" in message  # not "at" the NaN's index


@pytest.mark.slow
def test_all_padding_row_through_every_framework(tiny):
    """A batch whose third row's attention mask is all zeros, through PyTorch, TF and Flax on the tiny BERT.

    Measured (transformers 4.57, CPU): no framework gives NaN for that row here, but they fill fully masked
    attention differently (TF's -1e4 shift cancels in the softmax, PyTorch's and Flax's finfo.min gives uniform
    weights), so the row's outputs differ most across frameworks. It is excluded from every output and reported;
    the verdict is the real rows'."""
    from parity import api
    from parity.planning import batch as inputs
    from parity.planning.config import CheckConfig
    from parity.report.console import render

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, size=(3, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, :] = 0
    batch = inputs.Batch({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
                         "random-ids", 0)
    cfg = CheckConfig(path=str(tiny / "bert-pt"), frameworks=["pt", "tf", "flax"]).validated()
    res = api.run_check(cfg, batch=batch, save=False).to_dict()
    assert all(fw["status"] == "ok" for fw in res["frameworks"].values())
    assert res["inputs"]["empty_rows"] == [2]
    assert len(res["comparisons"]) == 2
    for comp in res["comparisons"]:
        rows = {row["name"]: row for row in comp["outputs"]}
        logits = rows["logits"]
        assert logits["masked"] and logits["total"] == 2 * 3 and logits["padded"]["positions"] == 3
        assert rows["hidden_states.3"]["total"] == (12 + 7) * 32
        assert all(row["total"] > 0 for row in comp["outputs"])
        assert comp["passed"] == all(row["passed"] for row in comp["outputs"])
    assert res["passed"] == all(c["passed"] for c in res["comparisons"])
    text = render(res)
    assert "1 row(s) all padding, excluded from every comparison (nothing to compare): 2" in text


# --- weights that are not finite or not float32 --------------------------------------------------------------

def _copy_weights(tiny, dest, change) -> str:
    """A copy of the tiny PyTorch BERT whose safetensors tensors went through ``change(dict)``."""
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copytree(tiny / "bert-pt", dest)
    weights = load_file(str(dest / "model.safetensors"))
    change(weights)
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return str(dest)


def test_weights_dtype_read_from_the_headers(tiny, tmp_path):
    from parity.planning.preflight import weights_dtype

    assert weights_dtype(tiny / "bert-pt", "model.safetensors") == "float32"
    half = _copy_weights(tiny, tmp_path / "half", lambda w: w.update({k: v.astype(np.float16) for k, v in w.items()}))
    assert weights_dtype(half, "model.safetensors") == "float16"
    assert weights_dtype(tiny / "bert-tf", "tf_model.h5") == "float32"
    assert weights_dtype(tiny / "bert-pt-bin", "pytorch_model.bin") == "float32"  # torch.FloatStorage, unread
    assert weights_dtype(tiny / "bert-flax", "flax_model.msgpack") is None  # not told without reading the arrays


HALF_NOTE = "checkpoint weights are float16; loaded as float32 (parity compares float32 in every framework)"


@pytest.mark.slow
def test_float16_checkpoint_is_compared_in_float32_everywhere(tiny, tmp_path):
    """Every tensor float16 (as .half().save_pretrained() writes them, config dtype included): PyTorch, TF
    (from the safetensors) and Flax (from_pt, which keeps float16 params) all run in float32 and say so."""
    import json

    from parity import api
    from parity.planning.config import CheckConfig

    half = _copy_weights(tiny, tmp_path / "half", lambda w: w.update({k: v.astype(np.float16) for k, v in w.items()}))
    config = json.loads((tmp_path / "half" / "config.json").read_text())
    (tmp_path / "half" / "config.json").write_text(json.dumps({**config, "dtype": "float16"}))
    cfg = CheckConfig(path=half, frameworks=["pt", "tf", "flax"]).validated()
    res = api.run_check(cfg, save=False).to_dict()
    for fw, entry in res["frameworks"].items():
        assert entry["status"] == "ok", (fw, entry["error"])
        assert any(n.startswith(HALF_NOTE) for n in entry["load"]["notes"]), (fw, entry["load"]["notes"])
        assert not any("NaN or Inf" in n for n in entry["load"]["notes"])
    # Measured (transformers 4.57): PyTorch and TF load float32 by themselves; Flax keeps float16 params.
    assert "Flax kept float16, cast to float32 by parity" in " ".join(res["frameworks"]["flax"]["load"]["notes"])
    assert len(res["comparisons"]) == 2
    for comp in res["comparisons"]:
        assert comp["outputs"] and all(row["total"] > 0 and row["error"] is None for row in comp["outputs"])
        assert comp["passed"] == all(row["passed"] for row in comp["outputs"])
    assert res["passed"] == all(c["passed"] for c in res["comparisons"]) and res["exit_code"] in (0, 1)


@pytest.mark.slow
def test_nan_weight_is_named_and_fails_where_it_lands(tiny, tmp_path):
    """One NaN in the pooler's dense weight: every framework's load report names that tensor, the hidden
    states still pass, and the check fails at the logits with the NaN's location."""
    from parity import api
    from parity.planning.config import CheckConfig

    def plant(w):
        w["bert.pooler.dense.weight"][3, 5] = np.nan

    ckpt = _copy_weights(tiny, tmp_path / "nan", plant)
    res = api.run_check(CheckConfig(path=ckpt, frameworks=["pt", "tf", "flax"]).validated(), save=False).to_dict()
    assert res["exit_code"] == 1 and not res["passed"]
    for fw, entry in res["frameworks"].items():
        assert entry["status"] == "ok", (fw, entry["error"])
        [note] = [n for n in entry["load"]["notes"] if "NaN or Inf" in n]
        assert note.startswith("weights hold NaN or Inf: ") and "pooler" in note and "(1 of 1024)" in note, note
        assert note.count(" of ") == 1, note  # that tensor only
    for comp in res["comparisons"]:
        rows = {row["name"]: row for row in comp["outputs"]}
        assert comp["first_divergence"] == "logits"
        assert all(row["passed"] for name, row in rows.items() if name.startswith(("hidden_states", "attentions")))
        logits = rows["logits"]
        assert not logits["passed"] and logits["nonfinite"]["reference"] == logits["total"]
        assert logits["worst_index"] == [0, 0]


def test_a_batch_of_only_empty_rows_is_no_pass():
    ref = _outputs(np.random.default_rng(2))
    pair = compare_pair("pt", "tf", ref, ref, list(ref), tolerance=TOL, attention_mask=np.zeros((3, 4)))
    assert not pair.passed and pair.first_divergence == "hidden_states.1"
    assert all(r.error.startswith("nothing to compare: every batch row is all padding") for r in pair.outputs)
    # without padding exclusion (--no-exclude-padding style callers) everything is compared, as before
    assert compare_pair("pt", "tf", ref, ref, list(ref), tolerance=TOL, attention_mask=np.zeros((3, 4)),
                        exclude_padding=False).passed


@pytest.mark.slow
def test_cached_float16_conversion_keeps_one_note(tiny, tmp_path, monkeypatch):
    """The conversion cache keeps the cast (float32) weights and the load's notes: a re-check that loads
    them says the checkpoint's dtype once, not twice."""
    from parity import api
    from parity.planning.config import CheckConfig

    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "cache"))
    half = _copy_weights(tiny, tmp_path / "half", lambda w: w.update({k: v.astype(np.float16) for k, v in w.items()}))
    for expected in ("stored", "hit"):
        res = api.run_check(CheckConfig(path=half, frameworks=["pt", "flax"]).validated(), save=False).to_dict()
        flax = res["frameworks"]["flax"]
        assert flax["status"] == "ok" and flax["cache"] == expected, flax
        assert sum(n.startswith(HALF_NOTE) for n in flax["load"]["notes"]) == 1, flax["load"]["notes"]
        assert res["comparisons"][0]["outputs"]
