"""The noise-aware verdict (`--gate oracle`): float32 noise passes, a drifted layer fails, both distances shown."""

import numpy as np
import pytest

from parity.numerics.compare import compare_pair
from parity.numerics.oracle import MULTIPLIER, SMALL_MULTIPLIER, judge, rmse

slow = pytest.mark.slow


def test_rule_is_dynamo_same_with_an_fp64_reference():
    truth = np.linspace(-1, 1, 2000).reshape(2, 1000)
    ref = truth + 1e-3
    row = judge(ref, truth + 1.9e-3, truth, None, atol=0.0)
    assert row["multiplier"] == MULTIPLIER and row["passed"]
    assert row["reference_rmse"] == pytest.approx(1e-3) and row["candidate_rmse"] == pytest.approx(1.9e-3)
    assert not judge(ref, truth + 2.1e-3, truth, None, atol=0.0)["passed"]
    assert judge(ref[:, :10], truth[:, :10] + 2.9e-3, truth[:, :10], None, atol=0.0)["multiplier"] == SMALL_MULTIPLIER
    # the mask counts: a difference on excluded positions is not in the RMSE
    valid = np.zeros((2, 1000), bool)
    valid[:, :500] = True
    cand = truth.copy()
    cand[:, 500:] += 1.0
    assert rmse(cand, truth, valid) == 0.0 and rmse(cand, truth) > 0.5
    assert not judge(ref, np.full_like(truth, np.nan), truth, None, atol=1.0)["passed"]


def test_gate_keeps_the_elementwise_verdict_and_shows_both_distances():
    truth = np.linspace(-1, 1, 2000).reshape(2, 1000)
    ref, cand = (truth + 1e-3).astype(np.float32), (truth - 1e-3).astype(np.float32)
    tol = lambda name: (1e-5, 0.0)  # noqa: E731
    comp = compare_pair("pt", "flax", {"logits": ref}, {"logits": cand}, ["logits"], tolerance=tol,
                        oracle={"logits": truth}, oracle_gate=True)
    row = comp.outputs[0]
    assert comp.passed and row.gate == {"kind": "oracle", "elementwise_passed": False}
    assert row.oracle["passed"] and row.oracle["candidate_rmse"] > 0 and row.oracle["reference_rmse"] > 0
    plain = compare_pair("pt", "flax", {"logits": ref}, {"logits": cand}, ["logits"], tolerance=tol,
                         oracle={"logits": truth})
    assert not plain.passed and plain.outputs[0].oracle["passed"]  # measured, but element-wise decides


def test_module_by_module_float64_is_the_whole_model_in_float64():
    """The oracle's float64 run without a float64 copy of the model gives model.double()'s outputs."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from parity.worker.float64 import module_by_module

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                                         tie_word_embeddings=True)).eval()
    ids = torch.randint(5, 90, (2, 7))
    with torch.no_grad():
        f32 = model(input_ids=ids).logits
        with module_by_module(model):
            by_module = model(input_ids=ids).logits
        assert all(p.dtype == torch.float32 for p in model.parameters())  # left as loaded
        assert torch.equal(model(input_ids=ids).logits, f32)
        whole = model.double()(input_ids=ids).logits
    assert by_module.dtype == torch.float64 and torch.equal(by_module, whole)


@slow
@pytest.mark.parametrize("folder,frameworks,candidate", [("bert-tf-altered", "pt,tf", "tf"),
                                                          ("bert-flax-altered", "pt,flax", "flax")])
def test_drifted_layer_fails_the_oracle_gate(cli, tiny, folder, frameworks, candidate):
    r = cli("check", tiny / folder, "--frameworks", frameworks, "--gate", "oracle")
    assert r.code == 1
    comp = r.comparison(candidate)
    failed = [row for row in comp["outputs"] if not row["passed"]]
    assert failed and failed[0]["name"] == comp["first_divergence"]
    for row in failed:
        o = row["oracle"]
        assert row["gate"] == {"kind": "oracle", "elementwise_passed": False}
        assert not o["passed"] and o["candidate_rmse"] > o["multiplier"] * o["reference_rmse"] + o["slack"]
    assert f"{comp['first_divergence']}: RMSE to float64: candidate" in r.out and "beyond float32 noise" in r.out


@slow
def test_float32_rounding_alone_passes_the_oracle_gate(cli, tiny):
    """An atol below the float32 rounding of a 3-layer BERT: element-wise fails, the oracle sees only noise."""
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,flax", "--gate", "oracle", "--atol", "1e-9",
            "--rtol", "0")
    assert r.code == 0, r.out
    rows = r.comparison("flax")["outputs"]
    assert rows and all(row["passed"] and row["oracle"]["passed"] for row in rows)
    assert not any(row["gate"]["elementwise_passed"] for row in rows)
    assert all(row["oracle"]["reference_rmse"] > 0 for row in rows)  # the reference itself is float32 noise away
    assert "(gate oracle: PASS; element-wise FAIL)" in r.out


def test_oracle_gate_needs_a_float64_framework(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "tf,flax", "--reference", "tf", "--gate", "oracle")
    assert r.code == 2 and "--gate oracle needs a framework that can run the model in float64" in r.err
    assert "Note:" in r.err and "pt" in r.err
