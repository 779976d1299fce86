"""--pipeline on tiny heads (fixtures/generation.py): transformers' pipeline built from each loaded model agrees
in PyTorch and TF; Flax has none and is skipped, said so; a label flip built on purpose is reported with its margin."""

from __future__ import annotations

import json

import pytest

from fixtures.generation import CLS_TEXTS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _check(folder, frameworks="pt,tf", **options) -> dict:
    import parity

    return parity.check(folder, frameworks=frameworks, texts=CLS_TEXTS, pipeline=True, max_new_tokens=6,
                        **options).to_dict()


def _agreeing(data: dict, task: str) -> dict:
    (entry,) = [e for e in data["pipeline"] if e["candidate"] == "tf"]
    assert entry["passed"] and entry["task"] == task, entry.get("summary")
    assert entry["label_agreement"] == 1.0 and entry["flips"] == [] and len(entry["items"]) == len(CLS_TEXTS)
    assert all(it["agrees"] and it["scores_within"] for it in entry["items"])
    return entry


def test_text_classification_agrees_and_flax_is_skipped(gen):
    data = _check(gen / "bert-cls", "pt,tf,flax")
    assert data["exit_code"] == 0, [e.get("summary") for e in data["pipeline"]]
    entry = _agreeing(data, "text-classification")
    assert all(it["label"][0] == it["label"][1] for it in entry["items"])
    (flax,) = [e for e in data["pipeline"] if e["candidate"] == "flax"]
    assert flax["passed"] and "pipelines run PyTorch and TensorFlow models only, not Flax" in flax["skipped"]


def test_a_label_flip_is_reported_with_its_margin(gen):
    expected = json.loads((gen / "bert-cls-flip" / "expected.json").read_text())
    data = _check(gen / "bert-cls-flip")
    assert data["exit_code"] == 1
    (entry,) = data["pipeline"]
    assert not entry["passed"]
    assert [f["index"] for f in entry["flips"]] == expected["flipped"] == [expected["built_input"]]
    flip = entry["flips"][0]
    item = entry["items"][flip["index"]]
    assert flip["label"] == item["label"] and flip["label"][0] != flip["label"][1]
    assert all(len(it["score"]) == 2 and 0 < min(it["score"]) for it in entry["items"])  # each side's top score
    assert flip["margin"] > 0 and flip["candidate_margin"] > 0
    assert entry["label_agreement"] == (len(CLS_TEXTS) - 1) / len(CLS_TEXTS)
    assert f"1 flip(s), first input {flip['index']}" in entry["summary"] and "reference margin" in entry["summary"]


@pytest.mark.parametrize("name,task", [("bert-tok", "token-classification"), ("bert-qa", "question-answering"),
                                       ("bert-mlm", "fill-mask"), ("gpt2", "text-generation")])
def test_pipelines_agree(gen, name, task):
    data = _check(gen / name)
    assert data["exit_code"] == 0, [e.get("summary") for e in data["pipeline"]]
    entry = _agreeing(data, task)
    if task == "token-classification":
        assert all(it["spans_equal"] and it["agreeing"] == it["total"] > 0 for it in entry["items"])
    elif task == "question-answering":
        assert all(it["answer"][0] == it["answer"][1] for it in entry["items"])
    elif task == "fill-mask":
        assert all(len(it["top_k"][0]) == 5 for it in entry["items"])
    else:
        assert all(it["text"][0] == it["text"][1] and it["text"][0] for it in entry["items"])
