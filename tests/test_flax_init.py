"""Native Flax weights load without transformers' throw-away random init (runners/flax.py), and give the
same numbers as the ordinary load; weights the checkpoint lacks still get initialised and reported."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flax")

from parity.worker.runners import runner_class  # noqa: E402
from parity.contracts.protocol import LoadSpec  # noqa: E402

pytestmark = pytest.mark.xdist_group("flax-init")


def _spec(folder, class_name, task):
    return LoadSpec(path=str(folder), task=task, class_name=class_name, weights="flax_model.msgpack",
                    device="cpu")


def test_native_flax_skips_init_and_matches_the_ordinary_load(tiny, ids_batch):
    import transformers

    folder = tiny / "bert-flax"
    runner = runner_class("flax")(_spec(folder, "FlaxBertForSequenceClassification", "sequence-classification"))
    report = runner.load()
    assert runner.params is not None  # loaded with _do_init=False
    assert report.missing == [] and report.unexpected == []
    got = runner.run(ids_batch)
    ordinary = transformers.FlaxBertForSequenceClassification.from_pretrained(str(folder))
    want = ordinary(**ids_batch, train=False)
    np.testing.assert_array_equal(got["logits"], np.asarray(want.logits))
    # The exported weights are the loaded ones, not a random init.
    exported = runner.export_weights()
    assert len(exported) > 10
    np.testing.assert_array_equal(exported["classifier.weight"],
                                  np.asarray(ordinary.params["classifier"]["kernel"]).T)


def test_missing_weights_fall_back_to_the_ordinary_load(tiny, ids_batch):
    # A sequence-classification checkpoint has no MLM / NSP heads: FlaxBertForPreTraining must initialise them.
    runner = runner_class("flax")(_spec(tiny / "bert-flax", "FlaxBertForPreTraining", "pretraining"))
    report = runner.load()
    assert runner.params is None
    assert any("predictions" in name for name in report.missing), report.missing
    out = runner.run(ids_batch)
    assert out["prediction_logits"].shape[:2] == (2, 12)


def _pt_spec(folder, class_name, task, weights):
    return LoadSpec(path=str(folder), task=task, class_name=class_name, weights=weights, device="cpu",
                    converted_from="pt")


def _ordinary_from_pt(folder, class_name):
    """transformers' own from_pt load, random init included: the reference for the shape-only converter."""
    import transformers

    return getattr(transformers, class_name).from_pretrained(str(folder), from_pt=True)


@pytest.mark.parametrize("fixture, weights", [("bert-pt", "model.safetensors"), ("bert-pt-bin", "pytorch_model.bin")])
def test_from_pt_skips_init_and_gives_the_ordinary_conversions_arrays(tiny, fixture, weights, ids_batch):
    from flax.traverse_util import flatten_dict

    folder = tiny / fixture
    runner = runner_class("flax")(_pt_spec(folder, "FlaxBertForSequenceClassification", "sequence-classification",
                                           weights))
    report = runner.load()
    assert runner.params is not None  # converted into a model built with _do_init=False
    ordinary = _ordinary_from_pt(folder, "FlaxBertForSequenceClassification")
    got, want = flatten_dict(runner.params), flatten_dict(ordinary.params)
    assert sorted(got) == sorted(want)
    for key in want:  # every converted array bit for bit, none of them a random init
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=str(key))
    assert report.missing == [] and report.mismatched == []
    out = runner.run(ids_batch)
    np.testing.assert_array_equal(out["logits"], np.asarray(ordinary(**ids_batch, train=False).logits))


def test_from_pt_with_missing_weights_falls_back_to_the_ordinary_load(tiny, ids_batch):
    # bert-pt-missing lacks layer 2's FFN input kernel: it must be initialised, so the ordinary load runs.
    runner = runner_class("flax")(_pt_spec(tiny / "bert-pt-missing", "FlaxBertForSequenceClassification",
                                           "sequence-classification", "model.safetensors"))
    report = runner.load()
    assert runner.params is None
    assert any("layer" in name and "2" in name and "intermediate" in name for name in report.missing), report.missing
    assert runner.run(ids_batch)["logits"].shape == (2, 3)


def test_streamed_msgpack_is_save_pretrained_byte_for_byte(tiny, tmp_path):
    """The conversion cache's Flax weights written leaf by leaf (parity.worker.runners.flax_save) are the bytes
    transformers' save_pretrained writes, and the folder loads back to the same arrays."""
    import transformers
    from flax.serialization import to_bytes
    from flax.traverse_util import flatten_dict

    from parity.worker.runners.flax_save import save

    model = transformers.FlaxBertForSequenceClassification.from_pretrained(str(tiny / "bert-flax"))
    save(model, model.params, str(tmp_path / "out"))
    assert (tmp_path / "out" / "flax_model.msgpack").read_bytes() == to_bytes(model.params)
    again = transformers.FlaxBertForSequenceClassification.from_pretrained(str(tmp_path / "out"))
    for key, value in flatten_dict(model.params).items():
        np.testing.assert_array_equal(np.asarray(flatten_dict(again.params)[key]), np.asarray(value))
