"""The comparison rule: tolerances, masks, NaN/Inf, the required tolerance."""

import math

import numpy as np
import pytest

from parity.numerics.compare import compare_array, compare_pair, valid_mask


def test_rule_is_atol_plus_rtol_times_reference():
    b = np.array([1.0, 100.0, 0.0])
    # allowed: 1e-3 + 1e-2*|b| = [0.011, 1.001, 0.001]
    ok = compare_array("x", b + np.array([0.011, 1.0, 0.001]) * 0.999, b, atol=1e-3, rtol=1e-2)
    assert ok["passed"] and ok["mismatched"] == 0
    bad = compare_array("x", b + np.array([0.0, 1.1, 0.0]), b, atol=1e-3, rtol=1e-2)
    assert not bad["passed"]
    assert bad["mismatched"] == 1 and bad["total"] == 3
    assert bad["worst_index"] == [1]
    assert bad["max_abs_diff"] == pytest.approx(1.1)
    assert bad["max_rel_diff"] == pytest.approx(0.011)
    assert bad["mismatched_share"] == pytest.approx(1 / 3)


def test_reference_is_b_not_a():
    # Asymmetric: the relative part scales with the reference only.
    a, b = np.array([10.0]), np.array([0.0])
    assert not compare_array("x", a, b, atol=1.0, rtol=0.5)["passed"]
    assert compare_array("x", b, a, atol=1.0, rtol=1.0)["passed"]


def test_required_atol_is_the_smallest_that_passes():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(4, 5))
    a = b + rng.normal(scale=1e-3, size=b.shape)
    r = compare_array("x", a, b, atol=0.0, rtol=1e-4)
    req = r["required_atol"]
    assert req > 0 and not r["passed"]
    assert compare_array("x", a, b, atol=req * (1 + 1e-9), rtol=1e-4)["passed"]
    assert not compare_array("x", a, b, atol=req * 0.99, rtol=1e-4)["passed"]


def test_metrics_cosine_and_mean():
    b = np.array([[1.0, 0.0], [0.0, 1.0]])
    a = np.array([[1.0, 0.1], [0.0, 1.0]])
    r = compare_array("x", a, b, atol=1e-5, rtol=0)
    assert r["mean_abs_diff"] == pytest.approx(0.025)
    assert r["cosine"] == pytest.approx(2 / (math.sqrt(2) * math.sqrt(2.01)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["candidate", "reference"])
def test_nan_and_inf_fail_on_either_side(bad, side):
    b = np.zeros((2, 3))
    a = np.zeros((2, 3))
    (a if side == "candidate" else b)[1, 2] = bad
    r = compare_array("x", a, b, atol=1.0, rtol=1.0)
    assert not r["passed"]
    assert r["mismatched"] == 1
    assert r["nonfinite"][side] == 1
    assert r["worst_index"] == [1, 2]
    assert r["required_atol"] is None  # no tolerance makes NaN pass


def test_nan_on_both_sides_still_fails():
    a = np.array([np.nan, 1.0])
    r = compare_array("x", a, a.copy(), atol=1, rtol=1)
    assert not r["passed"] and r["nonfinite"] == {"reference": 1, "candidate": 1}


def test_padded_positions_are_excluded():
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    b = np.zeros((2, 3, 4))
    a = b.copy()
    a[0, 2] = 5.0  # padded
    a[1, 1:] = np.nan  # padded: NaN there is not judged either
    r = compare_array("hidden_states.1", a, b, atol=1e-5, rtol=0,
                      valid=valid_mask("hidden_states.1", b.shape, mask))
    assert r["passed"] and r["total"] == 3 * 4 and r["masked"]
    a[1, 0, 3] = 1.0  # real token
    r = compare_array("hidden_states.1", a, b, atol=1e-5, rtol=0,
                      valid=valid_mask("hidden_states.1", b.shape, mask))
    assert not r["passed"] and r["worst_index"] == [1, 0, 3]


def test_attention_mask_drops_padded_queries_and_keys():
    mask = np.array([[1, 1, 0]])
    m = valid_mask("attentions.0", (1, 2, 3, 3), mask)
    assert m.shape == (1, 2, 3, 3)
    assert m[0, 0].tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    # Sequence-level outputs have no token axis: everything counts.
    assert valid_mask("logits", (1, 5), mask) is None
    assert valid_mask("pooler_output", (1, 3), mask) is None


def test_shape_mismatch_is_a_failure_with_a_reason():
    r = compare_array("logits", np.zeros((2, 3)), np.zeros((2, 4)), atol=1, rtol=1)
    assert not r["passed"] and "shape mismatch" in r["error"]


def test_pair_first_divergence_follows_given_order_and_missing_outputs_fail():
    ref = {"hidden_states.0": np.zeros(3), "hidden_states.1": np.zeros(3), "logits": np.zeros(2)}
    cand = {"hidden_states.0": np.zeros(3), "hidden_states.1": np.ones(3)}
    comp = compare_pair("pt", "tf", ref, cand, ["hidden_states.0", "hidden_states.1", "logits"],
                        tolerance=lambda n: (1e-5, 1e-5))
    assert not comp["passed"]
    assert comp["first_divergence"] == "hidden_states.1"
    missing = comp["outputs"][2]
    assert not missing["passed"] and missing["error"] == "output missing from tf"


def test_pair_passes_when_all_outputs_pass():
    ref = {"logits": np.arange(4.0)}
    comp = compare_pair("pt", "flax", ref, {"logits": np.arange(4.0) + 1e-7}, ["logits"],
                        tolerance=lambda n: (1e-5, 0))
    assert comp["passed"] and comp["first_divergence"] is None


def test_token_level_2d_outputs_are_masked():
    mask = np.array([[1, 0, 0]])
    assert valid_mask("start_logits", (1, 3), mask).tolist() == [[True, False, False]]


def test_padded_positions_are_reported_apart():
    mask = np.array([[1, 0]])
    b = np.zeros((1, 2, 3))
    a = b.copy()
    a[0, 1] = 0.5
    r = compare_array("hidden_states.0", a, b, atol=1e-5, rtol=0, valid=valid_mask("hidden_states.0", b.shape, mask))
    assert r["passed"]
    assert r["padded"] == {"positions": 3, "max_abs_diff": 0.5, "nonfinite": 0}


def test_masks_follow_the_stack_in_encoder_decoder_models():
    enc = np.array([[1, 1, 0]])
    masks = {"encoder": enc, "decoder": None}
    # encoder outputs drop padded encoder tokens
    assert valid_mask("encoder_hidden_states.0", (1, 3, 4), masks, True)[0, :, 0].tolist() == [True, True, False]
    # decoder outputs (no decoder padding) count everywhere, even when lengths happen to match
    assert valid_mask("logits", (1, 3, 9), masks, True) is None
    assert valid_mask("decoder_attentions.0", (1, 2, 3, 3), masks, True) is None
    # cross attention: every decoder query, only real encoder keys
    m = valid_mask("cross_attentions.0", (1, 2, 5, 3), masks, True)
    assert m.shape == (1, 2, 5, 3) and m[0, 0, :, 2].sum() == 0 and m[0, 0, :, :2].all()
    # caches: self-attention cache is decoder-aligned, the cross cache encoder-aligned (token axis 2)
    assert valid_mask("past_key_values.0.k", (1, 2, 3, 8), masks, True) is None
    assert valid_mask("past_key_values.0.cross_v", (1, 2, 3, 8), masks, True)[0, 0, :, 0].tolist() == \
        [True, True, False]


def test_masks_for_decoder_only_caches_vision_towers_and_multiple_choice():
    mask = np.array([[1, 1, 0]])
    assert valid_mask("past_key_values.1.v", (1, 2, 3, 8), mask)[0, 1, :, 3].tolist() == [True, True, False]
    assert valid_mask("vision_model_output.last_hidden_state", (1, 3, 4), mask) is None
    assert valid_mask("text_model_output.last_hidden_state", (1, 3, 4), mask)[0, :, 0].tolist() == \
        [True, True, False]
    choices = np.array([[[1, 1, 0], [1, 0, 0]]])            # (batch 1, 2 choices, 3 tokens)
    m = valid_mask("hidden_states.0", (2, 3, 4), choices)  # the model runs batch x choices rows
    assert m[:, :, 0].tolist() == [[True, True, False], [True, False, False]]
    assert valid_mask("logits", (1, 2), choices) is None


def test_a_cache_one_framework_does_not_return_is_listed_not_failed():
    ref = {"logits": np.ones(2), "past_key_values.0.k": np.ones(2)}
    cand = {"logits": np.ones(2)}
    comp = compare_pair("pt", "flax", ref, cand, ["logits", "past_key_values.0.k"], tolerance=lambda n: (1e-5, 1e-5))
    assert comp["passed"] and [o["name"] for o in comp["outputs"]] == ["logits"]
    assert comp["not_compared"] == [{"name": "past_key_values.0.k", "missing_in": "flax",
                                     "reason": "flax returns no cache from a plain forward pass"}]
    # any other missing output still fails
    comp = compare_pair("pt", "flax", {"logits": np.ones(2), "pooler_output": np.ones(2)}, cand,
                        ["logits", "pooler_output"], tolerance=lambda n: (1e-5, 1e-5))
    assert not comp["passed"] and comp["first_divergence"] == "pooler_output"


def test_blockwise_metrics_equal_one_pass(monkeypatch):
    """compare_array works in blocks along axis 0; tiny blocks must give the one-block metrics exactly."""
    import parity.numerics.compare as compare

    rng = np.random.default_rng(3)
    b = rng.standard_normal((6, 2, 5, 5)).astype(np.float32)
    a = b + (rng.standard_normal(b.shape) * 1e-4).astype(np.float32)
    a[1, 1, 2, 3] = np.nan
    mask = np.ones((6, 5), np.int64)
    mask[3:, 3:] = 0
    valid = valid_mask("attentions.0", b.shape, mask)
    kw = dict(atol=1e-5, rtol=1e-5, valid=valid, tokens=(6, 5))
    whole = compare_array("attentions.0", a, b, **kw)
    monkeypatch.setattr(compare, "CHUNK_ELEMENTS", 7)  # one batch row (50 elements) per block
    blocks = compare_array("attentions.0", a, b, **kw)
    assert blocks.keys() == whole.keys()
    for key, value in whole.items():
        if isinstance(value, float):
            assert blocks[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert blocks[key] == value, key
    assert whole["worst_index"] == [1, 1, 2, 3] and whole["nonfinite"]["candidate"] == 1
    assert whole["padded"]["positions"] > 0
