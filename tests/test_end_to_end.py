"""`parity check` end to end through the CLI: every conversion direction, altered weights, MiniLM."""

import pytest
from conftest import assert_within_tolerance

pytestmark = pytest.mark.slow

ALL = ("pt", "tf", "flax")


def _assert_clean_pass(r, *, outputs):
    assert r.code == 0, r.out + r.err
    res = r.results
    assert res["passed"] and res["exit_code"] == 0 and res["schema_version"] == 1
    assert [(c["reference"], c["candidate"]) for c in res["comparisons"]] == [("pt", "tf"), ("pt", "flax")]
    for comp in res["comparisons"]:
        assert comp["passed"] and comp["first_divergence"] is None
        assert [o["name"] for o in comp["outputs"]] == outputs
        for o in comp["outputs"]:
            assert_within_tolerance(o)
            # implied by the verdict: 1 - cosine <= (atol / rms(b) + rtol)^2 / 2, under 1e-6 here (rms(b) > 0.01)
            assert o["cosine"] > 0.99999
    return res


TINY_OUTPUTS = ["hidden_states.0", "attentions.0", "hidden_states.1", "attentions.1", "hidden_states.2",
                "attentions.2", "hidden_states.3", "logits"]


@pytest.mark.parametrize("name, expect", [
    ("bert-pt", {"pt": ("model.safetensors", None, None), "tf": ("model.safetensors", "pt", None),
                 "flax": ("model.safetensors", "pt", None)}),
    ("bert-pt-bin", {"pt": ("pytorch_model.bin", None, None), "tf": ("pytorch_model.bin", "pt", None),
                     "flax": ("pytorch_model.bin", "pt", None)}),
    ("bert-tf", {"pt": ("tf_model.h5", "tf", None), "tf": ("tf_model.h5", None, None),
                 "flax": ("tf_model.h5", "tf", "pt")}),
    ("bert-flax", {"pt": ("flax_model.msgpack", "flax", None), "tf": ("flax_model.msgpack", "flax", "pt"),
                   "flax": ("flax_model.msgpack", None, None)}),
])
def test_every_conversion_direction(cli, tiny, name, expect):
    r = cli("check", tiny / name)
    res = _assert_clean_pass(r, outputs=TINY_OUTPUTS)
    assert res["task"] == "sequence-classification"  # inferred from config.architectures
    got = {fw: (e["weights"], e["converted_from"], e["via"]) for fw, e in res["frameworks"].items()}
    assert got == expect
    for fw, e in res["frameworks"].items():
        assert e["status"] == "ok" and e["device"] == "cpu" and e["load"]["missing"] == []
    # A worker imports its own framework and a conversion's source, nothing else. With kept workers (the
    # tests' shared pool) the TF <-> Flax bridge's PyTorch weights come from the kept PyTorch worker
    # (executor._bridge), and TF and Flax read PyTorch's safetensors themselves.
    own = {"pt": "torch", "tf": "tensorflow", "flax": "jax"}
    kept = "pool" in res["schedule"]
    for fw, (weights, src, via) in expect.items():
        need = {own[fw]} if via and kept else {own[fw]} | {own[s] for s in (src, via) if s}
        if fw in ("flax", "tf") and src == "pt" and weights == "model.safetensors":
            need.discard("torch")  # both read PyTorch's safetensors themselves
        assert set(res["frameworks"][fw]["imported"]) == need, (fw, res["frameworks"][fw]["imported"])
        bridged = [n for n in res["frameworks"][fw]["load"]["notes"] if "PyTorch weights first" in n]
        if via:  # fresh workers bridge in place (tests/test_pool.py: the same bits either way)
            assert len(bridged) == 1 and ("in a kept PyTorch worker" in bridged[0]) == kept, bridged
        else:
            assert not bridged, bridged
    if name == "bert-flax":  # no tokenizer: seeded ids with a padded mask
        assert res["inputs"]["source"] == "random-ids" and res["inputs"]["padded_positions"] > 0
    else:
        assert res["inputs"]["source"] == "tokenizer"
        assert res["inputs"]["keys"] == ["input_ids", "token_type_ids", "attention_mask"]
    assert "verdict: PASS" in r.out


def test_altered_tf_layer_is_caught_at_its_layer(cli, tiny):
    # Layer 1's FFN kernel scaled by 1.01 in tf_model.h5: layer 1's attention is still
    # identical, its output (hidden_states.2) is the first to differ.
    r = cli("check", tiny / "bert-tf-altered")
    assert r.code == 1, r.out + r.err
    tf, flax = r.comparison("tf"), r.comparison("flax")
    assert not tf["passed"] and tf["first_divergence"] == "hidden_states.2"
    by_name = {o["name"]: o for o in tf["outputs"]}
    assert by_name["attentions.1"]["passed"] and by_name["hidden_states.1"]["passed"]
    assert by_name["hidden_states.2"]["max_abs_diff"] > 1e-4
    assert flax["passed"]  # flax was converted from the intact PyTorch weights
    assert "first divergence: hidden_states.2" in r.out and "verdict: FAIL (exit 1" in r.out


def test_altered_flax_bias_is_caught_at_its_attention(cli, tiny):
    r = cli("check", tiny / "bert-flax-altered")
    assert r.code == 1
    assert r.comparison("tf")["passed"]
    flax = r.comparison("flax")
    assert flax["first_divergence"] == "attentions.1"


def test_source_pt_ignores_the_altered_tf_weights(cli, tiny):
    r = cli("check", tiny / "bert-tf-altered", "--source", "pt")
    assert r.code == 0, r.out
    assert r.results["frameworks"]["tf"]["converted_from"] == "pt"


def test_tf_reads_pt_safetensors_without_torch_to_the_same_numbers(cli, tiny, tmp_path):
    """The same weights as model.safetensors (TF reads them itself) and as pytorch_model.bin (through torch)."""
    direct = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf", "--report-dir", tmp_path / "direct")
    via_torch = cli("check", tiny / "bert-pt-bin", "--frameworks", "pt,tf", "--report-dir", tmp_path / "bin")
    assert direct.code == via_torch.code == 0, direct.out
    tf_direct, tf_torch = direct.results["frameworks"]["tf"], via_torch.results["frameworks"]["tf"]
    assert tf_direct["imported"] == ["tensorflow"] and tf_torch["imported"] == ["tensorflow", "torch"]
    assert any("without torch" in n for n in tf_direct["load"]["notes"])
    assert tf_direct["load"]["missing"] == tf_torch["load"]["missing"] == []
    assert tf_direct["load"]["unexpected"] == tf_torch["load"]["unexpected"]
    rows = [[(o["name"], o["max_abs_diff"], o["mean_abs_diff"]) for o in run.comparison("tf")["outputs"]]
            for run in (direct, via_torch)]
    assert rows[0] == rows[1] and len(rows[0]) > 5


def test_minilm_passes_in_all_three_frameworks(cli, minilm):
    r = cli("check", minilm)
    layers = [n for i in range(6) for n in (f"hidden_states.{i}", f"attentions.{i}")]
    res = _assert_clean_pass(r, outputs=layers + ["hidden_states.6", "last_hidden_state", "pooler_output"])
    assert res["task"] == "base" and res["checkpoint"]["model_type"] == "bert"
    assert res["inputs"]["shapes"]["input_ids"] == [6, 64]
    assert res["inputs"]["padded_positions"] > 0
    for comp in res["comparisons"]:
        hidden = next(o for o in comp["outputs"] if o["name"] == "last_hidden_state")
        assert hidden["shape"] == [6, 64, 384]
        assert hidden["total"] < 6 * 64 * 384  # padded positions excluded
        assert hidden["max_abs_diff"] > 0  # two frameworks' float32 arithmetic, not one array twice
    env = res["environment"]["versions"]
    assert env["transformers"].startswith("4.57") and env["torch"] and env["tensorflow"] and env["flax"]
    assert len(res["checkpoint"]["fingerprint"]) == 64
    kept = res["schedule"].get("pool", {}).get("workers", {})  # the tests' shared pool (conftest.py)
    for fw in ("pt", "tf", "flax"):  # the import is its own stage, apart from reading the weights
        sec = res["frameworks"][fw]["seconds"]
        assert 0 < sec["import"] and 0 < sec["load"] and sec["import"] + sec["load"] + sec["run"] <= sec["total"]
        # the worker's own CPU time: a fresh one's includes its framework's import; a kept one imported before
        assert sec["cpu"] > (1.0 if kept.get(fw, {"check": 1})["check"] == 1 else 0), (sec, kept.get(fw))
    assert 0 < res["seconds"]["cpu"] < res["seconds"]["total"] * 2


def test_texts_outputs_and_two_frameworks(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,flax", "--outputs", "logits",
            "--text", "hello world", "--text", "the quick brown fox jumps", "--max-length", "8")
    assert r.code == 0, r.out + r.err
    res = r.results
    assert res["inputs"]["texts"] == ["hello world", "the quick brown fox jumps"]
    assert res["inputs"]["shapes"]["input_ids"][0] == 2 and res["inputs"]["shapes"]["input_ids"][1] <= 8
    assert [c["candidate"] for c in res["comparisons"]] == ["flax"]
    assert [o["name"] for o in res["comparisons"][0]["outputs"]] == ["logits"]
    assert set(res["frameworks"]) == {"pt", "flax"}


def test_tight_tolerance_fails_with_required_atol(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf", "--atol", "0", "--rtol", "0")
    comp = r.comparison("tf")
    if comp["passed"]:
        pytest.skip("TF reproduced PyTorch bit for bit on this machine")
    assert r.code == 1
    failing = next(o for o in comp["outputs"] if not o["passed"])
    assert failing["required_atol"] > 0
    assert "Mismatched elements:" in r.out


def test_framework_failure_is_exit_3_and_recorded(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--device", "gpu")
    assert r.code == 3, r.out + r.err
    res = r.results
    assert not res["passed"] and res["exit_code"] == 3
    for fw in ALL:
        assert res["frameworks"][fw]["status"] == "error"
        assert "sees no GPU" in res["frameworks"][fw]["error"]
    assert res["comparisons"] == []
