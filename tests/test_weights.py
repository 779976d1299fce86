"""Weight exports: names and layouts (parity.worker.weights), the file (parity.contracts.exports) and the
tensor-by-tensor comparison (parity.numerics.weights_diff); pure numpy."""

import json

import numpy as np

from parity.contracts import exports
from parity.numerics.weights_diff import diff_weights
from parity.worker import weights


def _export(seed=0):
    rng = np.random.default_rng(seed)
    return {"enc.dense.weight": rng.standard_normal((4, 3)).astype(np.float32),
            "enc.dense.bias": rng.standard_normal(4).astype(np.float32),
            "head.weight": rng.standard_normal((2, 4)).astype(np.float32)}


def test_identical_exports_pass():
    a = _export()
    res = diff_weights(a, {k: v.copy() for k, v in a.items()})
    assert res.passed and res.identical == 3 and res.max_abs_diff == 0.0
    d = res.to_dict()
    assert d["counts"] == {"missing": 0, "unexpected": 0, "shape_mismatch": 0, "differing": 0}
    json.dumps(d, allow_nan=False)


def test_every_kind_of_difference_is_reported():
    a = _export()
    b = {k: v.copy() for k, v in a.items()}
    b["enc.dense.weight"][1, 2] += 1e-3            # one element of one tensor
    del b["head.weight"]                           # missing
    b["extra.bias"] = np.zeros(2, np.float32)      # unexpected
    b["enc.dense.bias"] = np.zeros(5, np.float32)  # reshaped
    res = diff_weights(a, b)
    assert not res.passed
    assert res.missing == ["head.weight"] and res.unexpected == ["extra.bias"]
    assert res.shape_mismatch == [{"name": "enc.dense.bias", "reference": [4], "candidate": [5]}]
    [diff] = res.differing
    assert diff["name"] == "enc.dense.weight" and diff["mismatched"] == 1 and diff["total"] == 12
    assert abs(diff["max_abs_diff"] - 1e-3) < 1e-6
    assert res.identical == 0


def test_atol_and_nan_rules():
    a = _export()
    b = {k: v.copy() for k, v in a.items()}
    b["enc.dense.weight"][0, 0] += 1e-6
    assert not diff_weights(a, b).passed                      # exact by default
    res = diff_weights(a, b, atol=1e-5)
    assert res.passed and res.within_tolerance == 1 and res.identical == 2
    a["head.weight"][0, 0] = np.nan
    b["head.weight"][0, 0] = np.nan                               # NaN in the same place on both sides: equal
    assert diff_weights(a, b, atol=1e-5).passed
    b["head.weight"][0, 1] = np.nan                               # NaN on one side only: differs
    res = diff_weights(a, b, atol=1e-5)
    assert not res.passed and res.differing[0]["name"] == "head.weight" and res.differing[0]["max_abs_diff"] is None
    json.dumps(res.to_dict(), allow_nan=False)


def test_flax_names_and_layouts_follow_transformers_converter():
    k = np.arange(6, dtype=np.float32).reshape(2, 3)             # Dense kernel (in, out)
    name, arr = weights.flax_to_canonical(("bert", "encoder", "layer", "0", "dense", "kernel"), k)
    assert name == "bert.encoder.layer.0.dense.weight" and np.array_equal(arr, k.T)
    conv = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)   # HWIO
    name, arr = weights.flax_to_canonical(("patch", "projection", "kernel"), conv)
    assert name == "patch.projection.weight" and arr.shape == (5, 4, 2, 3)
    assert arr[4, 3, 1, 2] == conv[1, 2, 3, 4]
    assert weights.flax_to_canonical(("LayerNorm", "scale"), k)[0] == "LayerNorm.weight"
    assert weights.flax_to_canonical(("word_embeddings", "embedding"), k)[0] == "word_embeddings.weight"
    assert weights.flax_to_canonical(("bn", "mean"), k)[0] == "bn.running_mean"


def test_tf_layouts_and_base_prefix():
    conv = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)   # TF HWIO
    assert weights.tf_to_pt_layout(conv, "CONV2D")[4, 3, 1, 2] == conv[1, 2, 3, 4]
    k1 = np.arange(24, dtype=np.float32).reshape(2, 3, 4)                   # TF (K, I, O)
    assert weights.tf_to_pt_layout(k1, "CONV1D")[3, 2, 1] == k1[1, 2, 3]
    k = np.ones((2, 3), np.float32)
    assert weights.tf_to_pt_layout(k, "SIMPLE").shape == (3, 2)
    assert weights.tf_to_pt_layout(k, "NO").shape == (2, 3)
    base = {"bert.a": 1, "bert.b": 2}
    assert weights.strip_base_prefix(base, "bert") == {"a": 1, "b": 2}
    head = {"bert.a": 1, "classifier.weight": 2}
    assert weights.strip_base_prefix(head, "bert") == head


def test_save_load_round_trip(tmp_path):
    a = _export()
    back = exports.load(exports.save(a, tmp_path / "w.npz"))
    assert diff_weights(a, back).passed
