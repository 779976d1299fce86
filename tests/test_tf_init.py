"""TF models load without the throw-away random init (runners/workarounds/zeros_init.py) and give transformers'
own numbers bit for bit; a load that leaves any weight unset falls back to the ordinary load."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tf_keras")

from parity.worker.runners import runner_class  # noqa: E402
from parity.contracts.protocol import LoadSpec  # noqa: E402

pytestmark = pytest.mark.xdist_group("tf-init")


def _ordinary(folder, class_name, **kwargs):
    import transformers

    model, info = getattr(transformers, class_name).from_pretrained(str(folder), output_loading_info=True, **kwargs)
    return model, info


def _same_weights(runner, model):
    # Keras numbers each model's top scope (…_classification_1): compare below it.
    got = {w.name.split("/", 1)[1]: w.numpy() for w in runner.model.weights}
    want = {w.name.split("/", 1)[1]: w.numpy() for w in model.weights}
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("fixture, weights, converted_from, kwargs", [
    ("bert-tf", "tf_model.h5", None, {"use_safetensors": False}),
    ("bert-pt", "model.safetensors", "pt", {"from_pt": True}),
    ("bert-pt-bin", "pytorch_model.bin", "pt", {"from_pt": True}),
])
def test_loads_without_random_init_to_transformers_numbers(tiny, fixture, weights, converted_from, kwargs,
                                                           ids_batch):
    folder = tiny / fixture
    spec = LoadSpec(path=str(folder), task="sequence-classification", class_name="TFBertForSequenceClassification",
                    weights=weights, converted_from=converted_from, device="cpu")
    runner = runner_class("tf")(spec)
    report = runner.load()
    assert runner.skipped_init
    assert report.missing == [] and report.mismatched == []
    model, _ = _ordinary(folder, "TFBertForSequenceClassification", **kwargs)
    _same_weights(runner, model)
    want = model(ids_batch, training=False).logits.numpy()
    np.testing.assert_array_equal(runner.run(ids_batch)["logits"], want)


def test_missing_weights_fall_back_to_the_ordinary_load(tiny):
    # A sequence-classification checkpoint has no MLM / NSP heads: TFBertForPreTraining must initialise them.
    spec = LoadSpec(path=str(tiny / "bert-tf"), task="pretraining", class_name="TFBertForPreTraining",
                    weights="tf_model.h5", device="cpu")
    runner = runner_class("tf")(spec)
    report = runner.load()
    assert not runner.skipped_init
    assert report.missing, report
    weights = {w.name: w.numpy() for w in runner.model.weights}
    kernel = next(v for n, v in weights.items() if "seq_relationship" in n and "kernel" in n)
    assert np.any(kernel != 0)  # initialised the ordinary way, not left at zeros


def test_an_unset_weight_is_caught_even_when_transformers_does_not_list_it(tiny, monkeypatch):
    """Weights matched by _keys_to_ignore_on_load_missing are not reported missing; zeros_init must not
    leave them at zero. Simulated: the heads' loading info is emptied, the value check must still see
    weights the file never set, and the ordinary load runs."""
    import transformers

    cls = transformers.TFBertForPreTraining
    original = cls.from_pretrained.__func__

    def quiet(klass, *args, **kwargs):
        model, info = original(klass, *args, **kwargs)
        return model, dict(info, missing_keys=[])

    monkeypatch.setattr(cls, "from_pretrained", classmethod(quiet))
    spec = LoadSpec(path=str(tiny / "bert-tf"), task="pretraining", class_name="TFBertForPreTraining",
                    weights="tf_model.h5", device="cpu")
    runner = runner_class("tf")(spec)
    runner.load()
    assert not runner.skipped_init
    weights = {w.name: w.numpy() for w in runner.model.weights}
    assert all(np.any(v != 0) for n, v in weights.items() if "seq_relationship" in n and "kernel" in n)
