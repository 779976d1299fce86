"""KerasHub (Keras 3 on JAX, TensorFlow, PyTorch) as frameworks: tiny checkpoints in PyTorch against every
Keras backend, the backends against each other, and the bad inputs.

Each check runs one worker per framework (a Keras backend is fixed per process); the checks are
module-scoped and one check covers several frameworks, so the module stays near a few minutes.
"""

import importlib.util

import pytest
from conftest import assert_within_tolerance

import parity
from fixtures import keras_models
from parity.planning import tasks
from parity.planning import keras_catalog

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("keras")]
KERAS = ("keras-jax", "keras-tf", "keras-torch")
pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def tiny_keras():
    from conftest import build_cached

    return build_cached("keras", ["-m", "fixtures.keras_models", "build", "{out}"],
                        ["fixtures/keras_models.py", "fixtures/matrix.py"])


def _check(tiny_keras, model_type, frameworks=("pt", *KERAS), **options):
    task = keras_models.TASKS[model_type]
    return parity.check(tiny_keras / model_type / task, task=task, frameworks=",".join(frameworks),
                        max_length=keras_models.MAX_LENGTH, **options).to_dict()


def _passes(res, candidates, expected_names, attentions=True):
    for fw in res["frameworks"]:
        assert res["frameworks"][fw]["status"] == "ok", (fw, res["frameworks"][fw]["error"])
    comps = {c["candidate"]: c for c in res["comparisons"]}
    assert set(comps) == set(candidates)
    for fw, comp in comps.items():
        names = [o["name"] for o in comp["outputs"]]
        assert names == expected_names, (fw, names)
        assert comp["passed"], (fw, comp["first_divergence"])
        for row in comp["outputs"]:
            assert_within_tolerance(row)
        # attention maps are not available from KerasHub's layers: listed with the reason, never a failure
        skipped = {s["name"]: s["reason"] for s in comp["not_compared"]}
        if attentions:  # the reference returns them
            assert "attentions.0" in skipped and "no attention maps" in skipped["attentions.0"], skipped
    return comps


@pytest.fixture(scope="module")
def bert_explained(tiny_keras):
    return _check(tiny_keras, "bert", explain=True)


def test_bert_base_in_pytorch_matches_every_keras_backend(bert_explained):
    res = bert_explained
    assert res["exit_code"] == 0 and res["task"] == "base"
    _passes(res, KERAS, ["hidden_states.0", "hidden_states.1", "hidden_states.2", "last_hidden_state",
                         "pooler_output"])
    for fw in KERAS:
        entry = res["frameworks"][fw]
        assert entry["class_name"] == "BertBackbone" and entry["converted_from"] == "pt"
        assert entry["load"]["missing"] == [] and entry["load"]["unexpected"] == []


def test_explain_follows_kerashub_weights_back_to_the_checkpoint(bert_explained):
    """--explain: KerasHub's variables followed back to the checkpoint's names, tensor by tensor: all identical."""
    pairs = bert_explained["diagnosis"]["pairs"]
    for fw in KERAS:
        pair = next(p for p in pairs if p["candidate"] == fw)
        wd = pair["weight_diff"]
        assert wd["compared"] > 30 and wd["identical"] == wd["compared"], wd
        assert not any(wd["counts"].values())


def test_gpt2_causal_lm_in_pytorch_matches_every_keras_backend(tiny_keras):
    res = _check(tiny_keras, "gpt2")
    assert res["exit_code"] == 0 and res["task"] == "causal-lm"
    comps = _passes(res, KERAS, ["hidden_states.0", "hidden_states.1", "hidden_states.2", "logits"])
    for fw, comp in comps.items():
        assert res["frameworks"][fw]["class_name"] == "GPT2CausalLM"
        # PyTorch's cache has no KerasHub counterpart outside generate(): not compared, with the reason
        assert any(s["name"].startswith("past_key_values.") for s in comp["not_compared"])


def test_keras_backends_against_each_other(tiny_keras):
    res = _check(tiny_keras, "gpt2", frameworks=KERAS, reference="keras-jax")
    assert res["exit_code"] == 0
    _passes(res, ("keras-tf", "keras-torch"), ["hidden_states.0", "hidden_states.1", "hidden_states.2", "logits"],
            attentions=False)


@pytest.mark.parametrize("model_type, keras", [("llama", "keras-jax"), ("gemma", "keras-torch"), ("qwen2", "keras-tf"),
                                               ("distilbert", "keras-jax"), ("albert", "keras-torch")])
def test_other_converted_types_in_pytorch_match_kerashub(tiny_keras, model_type, keras):
    """The other types the support table claims, one Keras backend each (the backends agree above)."""
    res = _check(tiny_keras, model_type, frameworks=("pt", keras))
    names = ["hidden_states.0", "hidden_states.1", "hidden_states.2"]
    names += ["logits"] if keras_models.TASKS[model_type] == "causal-lm" else ["last_hidden_state"]
    names += ["pooler_output"] if model_type == "albert" else []
    _passes(res, (keras,), names)


def test_mistral_weights_rounded_to_float16_by_kerashub(tiny_keras):
    """Finding: KerasHub's Mistral converter casts every tensor to float16 (docs/findings.md); --explain
    shows it in the weights, tensor by tensor, and the outputs part from the embeddings on."""
    res = _check(tiny_keras, "mistral", frameworks=("pt", "keras-tf"), explain=True)
    comp = res["comparisons"][0]
    assert not comp["passed"] and comp["first_divergence"] == "hidden_states.0"
    wd = res["diagnosis"]["pairs"][0]["weight_diff"]
    assert wd["counts"]["differing"] > 0 and not wd["counts"]["missing"] and not wd["counts"]["unexpected"]
    assert res["exit_code"] == 1


def test_roberta_findings(tiny_keras):
    """Findings: KerasHub's RoBERTa adds no token type embedding (transformers adds row 0 to every token),
    and RoBERTa / XLM-RoBERTa backbones have no pooler: the checkpoint's tensors are read by no one."""
    res = _check(tiny_keras, "roberta", frameworks=("pt", "keras-jax"))
    comp = res["comparisons"][0]
    assert comp["first_divergence"] == "hidden_states.0"
    assert {"roberta.embeddings.token_type_embeddings.weight", "roberta.pooler.dense.weight"} <= set(
        res["frameworks"]["keras-jax"]["load"]["unexpected"])
    res = _check(tiny_keras, "xlm-roberta", frameworks=("pt", "keras-torch"))
    rows = {o["name"]: o for o in res["comparisons"][0]["outputs"]}
    assert all(rows[n]["passed"] for n in ("hidden_states.0", "hidden_states.2", "last_hidden_state"))
    assert rows["pooler_output"]["error"] == "output missing from keras-torch"


def test_support_columns_come_from_kerashub():
    for fw in KERAS:
        assert tasks.mapping(fw, "base")["bert"] == "BertBackbone"
        assert tasks.mapping(fw, "causal-lm")["gpt2"] == "GPT2CausalLM"
        assert "bert" not in tasks.mapping(fw, "sequence-classification")
    assert set(keras_catalog.converters()) >= {"bert", "gpt2", "llama", "mistral", "gemma", "qwen2"}
    assert "opt" not in keras_catalog.converters()


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_backend_is_a_usage_error(tiny_keras, cli):
    r = cli("check", tiny_keras / "gpt2" / "causal-lm", "--frameworks", "pt,keras-mxnet")
    assert r.code == 2 and "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "unknown framework 'keras-mxnet'" in lines[0] and "Note:" in lines[0]
    assert "keras-jax, keras-tf, keras-torch" in lines[0]


def test_task_without_a_converter_is_unsupported_while_others_compare(tiny):
    """BERT's sequence-classification head: KerasHub converts no text-classifier head, pt and tf still compare."""
    res = parity.check(tiny / "bert-pt", frameworks="pt,tf,keras-jax", inline=True, max_length=8).to_dict()
    entry = res["frameworks"]["keras-jax"]
    assert entry["status"] == "unsupported" and "no sequence-classification head" in entry["error"]
    assert [c["candidate"] for c in res["comparisons"]] == ["tf"] and res["exit_code"] == 0


def test_kerashub_not_installed_is_unavailable(tiny, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras_hub" else real(name, *a))
    res = parity.check(tiny / "bert-pt", task="base", frameworks="pt,tf,keras-jax", inline=True,
                       max_length=8).to_dict()
    entry = res["frameworks"]["keras-jax"]
    assert entry["status"] == "unavailable" and "keras_hub not installed" in entry["error"]
    assert res["comparisons"][0]["candidate"] == "tf" and res["exit_code"] == 3
