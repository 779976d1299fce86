"""Native Flax weights load without transformers' throw-away random init (runners/flax.py), and give the
same numbers as the ordinary load; weights the checkpoint lacks still get initialised and reported."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flax")

from parity.runners import runner_class  # noqa: E402
from parity.runners.base import LoadSpec  # noqa: E402

pytestmark = pytest.mark.xdist_group("flax-init")


def _spec(folder, class_name, task):
    return LoadSpec(path=str(folder), task=task, class_name=class_name, weights="flax_model.msgpack",
                    device="cpu")


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, size=(2, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_native_flax_skips_init_and_matches_the_ordinary_load(tiny):
    import transformers

    folder = tiny / "bert-flax"
    runner = runner_class("flax")(_spec(folder, "FlaxBertForSequenceClassification", "sequence-classification"))
    report = runner.load()
    assert runner.params is not None  # loaded with _do_init=False
    assert report.missing == [] and report.unexpected == []
    got = runner.run(_batch())
    ordinary = transformers.FlaxBertForSequenceClassification.from_pretrained(str(folder))
    want = ordinary(**_batch(), train=False)
    np.testing.assert_array_equal(got["logits"], np.asarray(want.logits))
    # The exported weights are the loaded ones, not a random init.
    exported = runner.export_weights()
    assert len(exported) > 10
    np.testing.assert_array_equal(exported["classifier.weight"],
                                  np.asarray(ordinary.params["classifier"]["kernel"]).T)


def test_missing_weights_fall_back_to_the_ordinary_load(tiny):
    # A sequence-classification checkpoint has no MLM / NSP heads: FlaxBertForPreTraining must initialise them.
    runner = runner_class("flax")(_spec(tiny / "bert-flax", "FlaxBertForPreTraining", "pretraining"))
    report = runner.load()
    assert runner.params is None
    assert any("predictions" in name for name in report.missing), report.missing
    out = runner.run(_batch())
    assert out["prediction_logits"].shape[:2] == (2, 12)
