"""`parity support`: the matrix from transformers' auto mappings, and SUPPORT.md from results."""

import json

from parity import support_matrix as support
from parity.report import support_page as support_report

# The model types the issue names as having PyTorch, TF and Flax classes.
THREE = ("bert roberta xlm-roberta roberta-prelayernorm albert electra distilbert roformer bart mbart t5 mt5 "
         "marian pegasus blenderbot blenderbot-small gpt2 gptj opt xglm mistral vit resnet regnet whisper clip "
         "wav2vec2 encoder-decoder vision-encoder-decoder").split()


def test_matrix_follows_the_auto_mappings():
    table = support.matrix()
    for mt in THREE:
        assert any(fws[:3] == ["pt", "tf", "flax"] for fws in table[mt].values()), mt
    assert table["bert"]["next-sentence-prediction"] == ["pt", "tf", "flax"]
    # KerasHub's columns come from its converter table: a BERT backbone, no classifier head it converts
    keras = ["keras-jax", "keras-tf", "keras-torch"]
    assert table["bert"]["base"] == ["pt", "tf", "flax", *keras] and table["gpt2"]["causal-lm"][3:] == keras
    assert table["llama"]["causal-lm"] == ["pt", "flax", *keras]
    assert "keras-jax" not in table["bert"]["sequence-classification"] and "keras-jax" not in table["opt"]["base"]
    assert table["whisper"]["speech-seq2seq"] == ["pt", "tf", "flax"]
    assert table["bart"]["causal-lm"] == ["pt", "flax"]          # no TFBartForCausalLM
    assert "tf" not in table["llama"]["causal-lm"]
    assert all(len(fws) >= 2 for row in table.values() for fws in row.values())
    assert len(support.matrix(3)) < len(table)


def test_cli_support_text_and_markdown(cli):
    r = cli("support")
    assert r.code == 0, r.err
    assert r.out.startswith("transformers 4.") and "\nbert " in r.out
    md = cli("support", "--format", "md")
    assert md.code == 0
    header = next(line for line in md.out.splitlines() if line.startswith("| model type"))
    assert "| base |" in header and "speech-seq2seq" in header
    assert "| vit | pt/tf/flax |" in md.out


def _results(mt, task, passed, first=None):
    row = {"name": "hidden_states.0", "shape": [1, 2], "passed": passed, "max_abs_diff": 2e-7 if passed else 0.18,
           "worst_index": [0, 1], "mismatched": 0 if passed else 2, "total": 2, "atol": 1e-5, "rtol": 1e-5}
    comp = {"reference": "pt", "candidate": "flax", "passed": passed, "first_divergence": first, "outputs": [row],
            "not_compared": [{"name": "past_key_values.0.k", "missing_in": "flax", "reason": "x"}]}
    ok = dict(comp, candidate="tf", passed=True, first_divergence=None,
              outputs=[dict(row, passed=True, max_abs_diff=1e-7)], not_compared=[])
    return {"schema_version": 1, "passed": passed, "task": task, "checkpoint": {"model_type": mt},
            "inputs": {"modality": "text", "seq2seq": False}, "environment": {"versions": {"transformers": "4.57.6"}},
            "frameworks": {"pt": {"status": "ok"}, "tf": {"status": "ok"}, "flax": {"status": "ok"}},
            "comparisons": [ok, comp]}


def test_support_md_keeps_failures_as_findings(tmp_path, cli):
    for res in (_results("bert", "base", True), _results("electra", "base", False, "hidden_states.0")):
        d = tmp_path / "r" / res["checkpoint"]["model_type"]
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(res))
    text = support_report.render(support_report.load_all(tmp_path / "r"), notes={"electra/base": "defaults differ"})
    assert "| bert | base | text | PASS 1.0e-07 (1 outputs) | PASS 2.0e-07 (1 outputs) |" in text
    assert "| electra | base | text | PASS 1.0e-07 (1 outputs) | **FAIL** 1.8e-01 (1 outputs) |" in text
    assert "first divergence `hidden_states.0`" in text and "cause: defaults differ" in text
    assert "1 of 2 cases pass" in text and "`past_key_values.*` of bert, electra: flax returns no cache" in text
    r = cli("support", "--results", tmp_path / "r", "--output", tmp_path / "S.md")
    assert r.code == 0 and (tmp_path / "S.md").read_text().startswith("# Support")
    bad = cli("support", "--results", tmp_path / "missing")
    assert bad.code == 2 and bad.err.startswith("parity: error: results folder") and "Note:" in bad.err
