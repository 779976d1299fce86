"""Task resolution from transformers' auto mappings; weight routing; cheap weight checks."""

import json

import numpy as np
import pytest

from parity.planning import tasks
from parity.planning.checkpoint import Checkpoint
from parity.contracts.errors import UsageError


def test_mappings_are_read_from_transformers_source():
    assert tasks.mapping("pt", "base")["bert"] == "BertModel"
    assert tasks.mapping("tf", "sequence-classification")["bert"] == "TFBertForSequenceClassification"
    assert tasks.mapping("flax", "masked-lm")["roberta"] == "FlaxRobertaForMaskedLM"
    assert "bert" in tasks.known_model_types()


def test_ast_mapping_matches_the_imported_module():
    # The parser must agree with the real objects (importing them pulls torch, so only here).
    from transformers.models.auto import modeling_flax_auto, modeling_tf_auto

    assert tasks.mapping("tf", "causal-lm") == dict(modeling_tf_auto.TF_MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    assert tasks.mapping("flax", "base") == dict(modeling_flax_auto.FLAX_MODEL_MAPPING_NAMES)


@pytest.mark.parametrize("arch, task", [
    ("BertForSequenceClassification", "sequence-classification"),
    ("BertModel", "base"),
    ("TFBertForMaskedLM", "masked-lm"),
    ("FlaxBertForQuestionAnswering", "question-answering"),
    ("BertForPreTraining", "pretraining"),
])
def test_infer_from_architectures(arch, task):
    assert tasks.infer({"model_type": "bert", "architectures": [arch]}) == task


def test_infer_without_architectures_is_base():
    assert tasks.infer({"model_type": "bert"}) == "base"


def test_resolve_rejects_a_task_no_framework_has():
    with pytest.raises(UsageError, match="no image-classification class"):
        tasks.resolve({"model_type": "bert"}, "image-classification", ["pt", "tf", "flax"], "pt")
    with pytest.raises(UsageError, match="unknown task"):
        tasks.resolve({"model_type": "bert"}, "translation", ["pt", "tf"], "pt")


def test_resolve_marks_a_framework_without_the_class():
    # CTRL has PyTorch and TF classes only: Flax is recorded as unsupported, not an error.
    task, found = tasks.resolve({"model_type": "ctrl"}, "base", ["pt", "tf", "flax"], "pt")
    assert found == {"pt": "CTRLModel", "tf": "TFCTRLModel", "flax": None}


def _folder(tmp_path, files, config=None):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config or {"model_type": "bert"}))
    for f in files:
        (d / f).write_bytes(b"x")
    return d


@pytest.mark.parametrize("files, source, expect", [
    (["model.safetensors"], "auto", {"pt": ("model.safetensors", None, None), "tf": ("model.safetensors", "pt", None),
                                     "flax": ("model.safetensors", "pt", None)}),
    (["tf_model.h5"], "auto", {"pt": ("tf_model.h5", "tf", None), "tf": ("tf_model.h5", None, None),
                               "flax": ("tf_model.h5", "tf", "pt")}),
    (["flax_model.msgpack"], "auto", {"pt": ("flax_model.msgpack", "flax", None),
                                      "tf": ("flax_model.msgpack", "flax", "pt"),
                                      "flax": ("flax_model.msgpack", None, None)}),
    (["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"], "auto",
     {"pt": ("pytorch_model.bin", None, None), "tf": ("tf_model.h5", None, None),
      "flax": ("flax_model.msgpack", None, None)}),
    (["model.safetensors", "tf_model.h5"], "pt", {"pt": ("model.safetensors", None, None),
                                                  "tf": ("model.safetensors", "pt", None),
                                                  "flax": ("model.safetensors", "pt", None)}),
])
def test_plan_routes_each_framework(tmp_path, files, source, expect):
    plans = Checkpoint.open(_folder(tmp_path, files)).plan(["pt", "tf", "flax"], source)
    assert {fw: (p.weights, p.converted_from, p.via) for fw, p in plans.items()} == expect


def test_plan_rejects_a_source_the_folder_lacks(tmp_path):
    with pytest.raises(UsageError, match="no tf weights"):
        Checkpoint.open(_folder(tmp_path, ["model.safetensors"])).plan(["pt", "tf"], "tf")


def _safetensors(path):
    from safetensors.numpy import save_file

    save_file({"w": np.arange(1000, dtype=np.float32)}, str(path))


def test_weight_checks(tmp_path):
    d = _folder(tmp_path, [])
    _safetensors(d / "model.safetensors")
    ckpt = Checkpoint.open(d)
    plans = ckpt.plan(["pt", "tf"], "auto")
    ckpt.verify_weights(plans)  # sound file passes
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(UsageError, match="truncated"):
        ckpt.verify_weights(plans)
    (d / "model.safetensors").write_bytes(b"")
    with pytest.raises(UsageError, match="empty"):
        ckpt.verify_weights(plans)


def test_fingerprint_changes_with_content(tmp_path):
    d = _folder(tmp_path, ["model.safetensors"])
    a = Checkpoint.open(d).fingerprint()["sha256"]
    (d / "model.safetensors").write_bytes(b"y")
    assert Checkpoint.open(d).fingerprint()["sha256"] != a
