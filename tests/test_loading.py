"""As users load it: loading variants (FW[@ENV][:OPTION...]) and reduced-precision verdicts, on checkpoints built
by fixtures/loading.py (a GPT-2 saved in bfloat16), the tiny BERT and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import pytest

from parity.contracts import registry
from parity.contracts.errors import UsageError
from parity.planning.config import framework_key

slow = pytest.mark.slow


def test_a_key_carries_its_loading_options():
    assert registry.get("pt@v5:bf16") is registry.get("pt")
    assert registry.base("keras-jax:fp16") == "keras-jax"
    assert framework_key("torch@v5:AUTO:eager", {"v5": "/x"}) == "pt@v5:auto:eager"
    assert framework_key("pt:bf16:bf16", {}) == "pt:bf16"


@pytest.mark.parametrize("key, said", [("pt:bf8", "unknown loading option 'bf8'"),
                                       ("tf:bf16", "TensorFlow cannot load tf:bf16"),
                                       ("flax:sdpa", "Flax cannot load flax:sdpa"),
                                       ("keras-jax:eager", "cannot load keras-jax:eager"),
                                       ("pt:bf16:fp16", "bf16 and fp16 both set the dtype")])
def test_a_bad_option_is_refused(key, said):
    with pytest.raises(UsageError, match=said):
        framework_key(key, {})


def test_a_bad_option_is_one_line_and_exit_2(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf:fp16")
    assert r.code == 2, r.err
    assert r.err.startswith("parity: error: TensorFlow cannot load tf:fp16") and "Note:" in r.err
    assert "Traceback" not in r.err


def test_bf16_side_is_judged_by_the_statistical_gate(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,pt:bf16")
    data = r.results
    assert data["frameworks"]["pt:bf16"]["settings"]["dtype"] == "bfloat16"
    assert data["frameworks"]["pt"]["settings"]["dtype"] == "float32"
    rows = r.comparison("pt:bf16")["outputs"]
    assert all(row["gate"]["kind"] == "statistical" and row["rtol"] == 1.6e-2 for row in rows)
    assert not all(row["gate"]["elementwise_passed"] for row in rows)  # element-wise, bf16 would fail
    assert r.code == 0 and data["passed"], r.out
    assert "judged in bfloat16" in r.out


@slow
def test_bf16_checkpoint_under_transformers_5_auto_fails_naming_bfloat16(cli, loading, v5):
    r = cli("check", loading / "gpt2-bf16", "--env", f"v5={v5}", "--frameworks", "pt,pt@v5:auto", "--generate")
    data = r.results
    assert r.code == 1, r.out
    assert data["frameworks"]["pt@v5:auto"]["settings"]["dtype"] == "bfloat16"
    assert data["frameworks"]["pt"]["settings"]["dtype"] == "float32"
    assert not data["generation"][0]["passed"]
    assert "dtype differs (pt float32, pt@v5:auto bfloat16)" in r.out
    # SDPA returns no attention maps: not compared, with why, never a 0/0 failure
    comp = data["comparisons"][0]
    assert not any(o["name"].startswith("attentions.") for o in comp["outputs"])
    assert {(n["missing_in"], n["reason"]) for n in comp["not_compared"] if n["name"].startswith("attentions.")} == {
        ("pt@v5:auto", "pt@v5:auto loads attention sdpa, which returns no attention maps (:eager compares them)")}


@slow
def test_bf16_checkpoint_under_transformers_5_with_float32_forced_passes(cli, loading, v5):
    r = cli("check", loading / "gpt2-bf16", "--env", f"v5={v5}", "--frameworks", "pt,pt@v5:fp32", "--generate")
    assert r.code == 0, r.out
    assert r.results["frameworks"]["pt@v5:fp32"]["settings"]["dtype"] == "float32"


@slow
def test_explain_names_the_dtype_difference(cli, loading, v5):
    r = cli("check", loading / "gpt2-bf16", "--env", f"v5={v5}", "--frameworks", "pt,pt@v5:auto", "--explain",
            "--outputs", "logits,hidden_states")
    pair = r.results["diagnosis"]["pairs"][0]
    assert {"setting": "dtype", "pt": "float32", "pt@v5:auto": "bfloat16"} in pair["loading"]
    assert any("Cause: the sides load with another dtype" in line for line in pair["narrative"])


@slow
def test_minilm_in_bf16_passes_under_the_bf16_defaults(cli, minilm):
    r = cli("check", minilm, "--frameworks", "pt,pt:bf16")
    assert r.code == 0, r.out
    rows = r.comparison("pt:bf16")["outputs"]
    assert all(row["gate"]["kind"] == "statistical" for row in rows)


ACCENTED = ["Café naïve résumé", "hello world", "the quick brown fox"]


@slow
def test_legacy_llama_tokenizer_under_4_57_vs_5_fails_naming_the_text(cli, loading, v5):
    r = cli("check", loading / "llama-tok", "--env", f"v5={v5}", "--frameworks", "pt,pt@v5",
            "--text", " hello world", "--text", "what time is it")
    assert r.code == 1, r.out
    (pair,) = r.results["tokenizers"]
    assert not pair["passed"] and [t["text"] for t in pair["texts"]] == [" hello world"]
    assert pair["texts"][0]["ids"][0] != pair["texts"][0]["ids"][1]
    assert r.comparison("pt@v5")["passed"]  # the shared batch still agrees
    assert "text ' hello world'" in r.out
    assert cli("check", loading / "llama-tok", "--env", f"v5={v5}", "--frameworks", "pt,pt@v5", "--text",
               " hello world", "--tokenizers", "report").code == 0


def test_tokenizers_value_is_checked(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf", "--tokenizers", "maybe")
    assert r.code == 2 and r.err.startswith("parity: error: unknown --tokenizers value")


@slow
def test_minilm_pt_tf_has_no_tokenizer_pair(cli, minilm):
    r = cli("check", minilm, "--frameworks", "pt,tf", "--text", ACCENTED[0])
    assert r.code == 0, r.out
    assert r.results.get("tokenizers") is None


@slow
def test_minilm_against_kerashub_on_accented_texts_fails_on_tokenizers(cli, minilm):
    r = cli("check", minilm, "--frameworks", "pt,keras-jax", *[a for t in ACCENTED for a in ("--text", t)])
    (pair,) = r.results["tokenizers"]
    assert not pair["passed"] and r.code == 1, r.out
    assert "Café naïve résumé" in [t["text"] for t in pair["texts"]]
