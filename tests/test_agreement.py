"""Top-1 agreement and mean KL beside the element-wise metrics, and the top-1 gate."""

from __future__ import annotations

import numpy as np
import pytest

from parity.numerics.agreement import applies, gate_threshold, metrics
from parity.numerics.compare import compare_pair
from parity.contracts.errors import UsageError


def test_metrics_count_only_kept_positions():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 3, 5)).astype(np.float32)
    cand = ref.copy()
    cand[0, 1] = ref[0, 1][::-1]  # a different top-1 at one position (the reversed row's argmax moves)
    assert ref[0, 1].argmax() != cand[0, 1].argmax()
    rate, kl = metrics(cand, ref)
    assert rate == pytest.approx(5 / 6) and kl > 0
    mask = np.ones((2, 3, 1), bool)
    mask[0, 1] = False  # that position padded: nothing disagrees
    rate, kl = metrics(cand, ref, mask)
    assert rate == 1.0 and kl == pytest.approx(0.0, abs=1e-12)
    assert metrics(np.full((1, 2), np.nan), np.zeros((1, 2))) == (None, None)


def test_which_outputs_get_agreement():
    assert applies("logits", (2, 7, 99)) and applies("logits", (2, 3))
    assert applies("prediction_logits", (2, 7, 99)) and not applies("start_logits", (2, 7))
    assert not applies("hidden_states.1", (2, 7, 32)) and not applies("logits", (2, 1))


def test_top1_gate_decides_logits_on_their_rate():
    rng = np.random.default_rng(1)
    ref = {"logits": rng.normal(size=(4, 6)).astype(np.float32)}
    cand = {"logits": ref["logits"] + np.float32(1e-3)}  # every class shifted alike: same top-1, same softmax
    tol = lambda name: (1e-5, 1e-5)  # noqa: E731
    plain = compare_pair("pt", "tf", ref, cand, ["logits"], tolerance=tol)
    assert not plain.passed and plain.outputs[0].top1_agreement == 1.0
    gated = compare_pair("pt", "tf", ref, cand, ["logits"], tolerance=tol, top1_min=0.99)
    row = gated.outputs[0]
    assert gated.passed and row.passed and row.gate == {"kind": "top1", "min": 0.99, "elementwise_passed": False}
    assert row.mean_kl == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("gate,top1_min,message", [
    ("topk", None, "unknown gate"), ("elementwise", 0.9, "applies only with --gate top1"),
    ("top1", "1.2", "between 0 and 1"), ("top1", "x", "between 0 and 1")])
def test_bad_gates(gate, top1_min, message):
    with pytest.raises(UsageError, match=message):
        gate_threshold(gate, top1_min)
    assert gate_threshold("top1", None) == 0.99


def test_top1_gate_on_a_real_drift():
    """bert-cls-flip (fixtures/generation.py: TF's classifier bias raised for one label): element-wise every logit
    fails; one text of four changes its label, so the top-1 agreement is 3/4, and a gate at 0.75 passes."""
    import json

    import parity
    from conftest import build_cached
    from fixtures.generation import CLS_TEXTS
    from parity.report import console

    gen = build_cached("generation", ["-m", "fixtures.generation", "{out}"],
                       ["fixtures/generation.py", "fixtures/build.py"])
    flipped = json.loads((gen / "bert-cls-flip" / "expected.json").read_text())["flipped"]
    results = parity.check(gen / "bert-cls-flip", frameworks="pt,tf", texts=CLS_TEXTS, outputs="logits",
                           gate="top1", top1_min=0.75).to_dict()
    (comp,) = results["comparisons"]
    (row,) = comp["outputs"]
    assert row["top1_agreement"] == 1 - len(flipped) / len(CLS_TEXTS) == 0.75 and row["mean_kl"] > 0
    assert row["gate"] == {"kind": "top1", "min": 0.75, "elementwise_passed": False} and row["mismatched"] > 0
    assert comp["passed"] and results["exit_code"] == 0
    text = console.render(results)
    assert "logits: top-1 75.0%" in text and "element-wise FAIL" in text
