"""`--explain` on faulty checkpoints built from fixed seeds: the right layer, side and cause."""

import pytest

from parity.numerics.diagnose import DRIFT_RATIO, _inputs, in_stage, layer_of_weight, layer_table, stage

slow = pytest.mark.slow


def _pair(r, candidate):
    return next(p for p in r.results["diagnosis"]["pairs"] if p["candidate"] == candidate)


@slow
def test_tf_weight_scaled_one_percent(cli, tiny):
    r = cli("check", tiny / "bert-tf-altered", "--frameworks", "pt,tf", "--explain")
    assert r.code == 1
    pair = _pair(r, "tf")
    assert pair["first_divergence"] == "hidden_states.2" and pair["stage"] == "layer 1 output"
    intro = [row["layer"] for row in pair["layers"] if row["introduces"]]
    assert intro == ["layer 1"]
    assert pair["side"]["drifted"] == "tf" and pair["side"]["oracle"] == "pt"
    d = pair["side"]["distance"]
    assert d["tf"] > DRIFT_RATIO * d["pt"]  # pt is float32 noise away from the float64 truth, tf is not
    diag = r.results["diagnosis"]
    assert diag["noise_floor"]["run_to_run"] == {"pt": 0.0, "tf": 0.0}  # one framework, the same kernels twice
    # float32 noise is real, and far below tf's drift (the finding), whichever kernels the CPU ran
    assert 0 < diag["noise_floor"]["float32_vs_float64"] < d["tf"] / DRIFT_RATIO
    assert "Which side: tf drifted" in r.out and "layer 1 introduces the drift" in r.out
    # Weights, tensor by tensor: exactly the scaled kernel differs, and it sits where the outputs part.
    wd = pair["weight_diff"]
    assert wd["counts"] == {"missing": 0, "unexpected": 0, "shape_mismatch": 0, "differing": 1}
    bad = wd["differing"][0]
    assert bad["name"].endswith("encoder.layer.1.intermediate.dense.weight") and bad["layer"] == "layer 1"
    assert bad["mismatched"] == bad["total"] and wd["identical"] == wd["compared"] - 1
    assert wd["explains_divergence"] == [bad["name"]] and "this explains the divergence" in r.out


@slow
def test_flax_bias_changed_in_one_layer(cli, tiny):
    r = cli("check", tiny / "bert-flax-altered", "--frameworks", "pt,flax", "--explain")
    pair = _pair(r, "flax")
    assert pair["first_divergence"] == "attentions.1" and pair["stage"] == "layer 1 attention"
    assert [row["layer"] for row in pair["layers"] if row["introduces"]] == ["layer 1"]
    assert pair["side"]["drifted"] == "flax"
    wd = pair["weight_diff"]
    assert [d["name"].split("encoder.")[-1] for d in wd["differing"]] == ["layer.1.attention.self.query.bias"]
    assert wd["differing"][0]["max_abs_diff"] == pytest.approx(0.05, rel=1e-5)
    assert wd["explains_divergence"] and not wd["counts"]["missing"] and not wd["counts"]["unexpected"]


@slow
def test_newly_initialised_tensor_explains_the_divergence(cli, tiny):
    r = cli("check", tiny / "bert-pt-missing", "--frameworks", "pt,tf", "--explain")
    assert r.code == 1
    pair = _pair(r, "tf")
    assert pair["stage"] == "layer 2 output"
    assert pair["weights"]["pt"]["explains_divergence"] == ["bert.encoder.layer.2.intermediate.dense.weight"]
    assert pair["weights"]["tf"]["explains_divergence"]
    assert pair["side"]["drifted"] is None and "weights differ" in pair["side"]["verdict"]


@slow
def test_differences_only_on_padded_positions(cli, tiny):
    r = cli("check", tiny / "bert-tf-padembed", "--frameworks", "pt,tf", "--explain")
    assert r.code == 0  # padded positions are excluded from the verdict
    pair = _pair(r, "tf")
    assert pair["first_divergence"] is None and pair["padded_max_abs_diff"] > 0.1
    assert "padding artefacts, not a bug" in r.out


@slow
def test_over_tight_tolerance_is_named_as_the_problem(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,flax", "--explain", "--atol", "1e-9", "--rtol", "0")
    pair = _pair(r, "flax")
    assert r.code == 1 and pair["first_divergence"] == "hidden_states.0"
    side = pair["side"]
    assert side["drifted"] is None and side["verdict"].startswith("tolerance too tight")
    # The atol that would pass: above the one that failed, and no more than the two sides' float32 noise
    # (each output: |pt - flax| <= |pt - f64| + |flax - f64|), whatever its size on this CPU.
    dist = r.results["diagnosis"]["oracle"]["distance"]
    noise = max(dist["pt"][o["name"]] + dist["flax"][o["name"]] for o in r.comparison("flax")["outputs"])
    assert 1e-9 < side["passing_atol"] <= noise * (1 + 1e-9)
    assert "the embeddings already differ" in r.out
    # The float64 run judged every failing output float32 noise: the console points to the gate that says so.
    assert all(o["oracle"]["passed"] for o in r.comparison("flax")["outputs"] if not o["passed"])
    assert "--gate oracle judges it so" in r.out


@slow
def test_input_defaults_are_probed_in_each_framework(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf,flax", "--explain")
    inputs = r.results["diagnosis"]["inputs"]
    assert inputs["received"] == {fw: ["input_ids", "token_type_ids", "attention_mask"] for fw in ("pt", "tf", "flax")}
    for fw in ("pt", "tf", "flax"):
        probe = inputs["defaults"][fw]["position_ids"]
        assert probe["explicit_default"] == "arange(seq_len)" and probe["max_abs_change"] == 0.0
    assert inputs["notes"] == []


@slow
def test_replay_reruns_the_same_case(cli, tiny, tmp_path):
    first = cli("check", tiny / "bert-tf-altered", "--frameworks", "pt,tf", "--save-replay", tmp_path / "case")
    assert (tmp_path / "case" / "batch.npz").is_file()
    assert (tmp_path / "case" / "command.txt").read_text().startswith("parity replay ")
    again = cli("replay", tmp_path / "case", "--report-dir", tmp_path / "again")
    assert again.code == first.code == 1
    a, b = first.comparison("tf"), again.comparison("tf")
    assert a["first_divergence"] == b["first_divergence"] == "hidden_states.2"
    assert [o["max_abs_diff"] for o in a["outputs"]] == [o["max_abs_diff"] for o in b["outputs"]]


def test_input_default_that_differs_between_frameworks_is_named():
    class Run:
        def __init__(self, change):
            self.explain = {"received": ["input_ids"], "defaults": {"token_type_ids": {
                "explicit_default": "zeros", "max_abs_change": change, "first_changed": "hidden_states.0"}}}

    notes = _inputs({"pt": Run(0.0), "flax": Run(0.25)})["notes"]
    assert len(notes) == 1 and "flax fill token_type_ids differently" in notes[0]


def test_stage_and_weight_names():
    assert stage("hidden_states.0") == "embeddings"
    assert stage("hidden_states.3") == "layer 2 output"
    assert stage("attentions.1") == "layer 1 attention"
    assert stage("decoder_hidden_states.2") == "decoder layer 1 output"
    assert stage("logits") == "head"
    assert layer_of_weight("bert.encoder.layer.2.output.dense.weight") == "layer 2"
    assert layer_of_weight("tf_bert/bert/encoder/layer_._3/attention/self/query/kernel:0") == "layer 3"
    assert layer_of_weight("bert/encoder/layer/1/attention/self/query/bias") == "layer 1"
    assert layer_of_weight("bert.embeddings.word_embeddings.weight") == "embeddings"
    assert in_stage("layer 1", "layer 1 output") and not in_stage("layer 1", "layer 10 output")
    assert in_stage("embeddings", "decoder embeddings") and not in_stage("layer 1", None)


def test_layer_table_marks_only_the_layer_whose_input_agreed():
    def row(name, diff, ok):
        return {"name": name, "max_abs_diff": diff, "passed": ok}

    comp = {"outputs": [row("hidden_states.0", 1e-7, True), row("attentions.0", 1e-8, True),
                        row("hidden_states.1", 2e-3, False), row("attentions.1", 1e-3, False),
                        row("hidden_states.2", 3e-3, False)]}
    rows = layer_table(comp)
    assert [(r["layer"], r["introduces"]) for r in rows] == [("layer 0", True), ("layer 1", False)]
    assert rows[0]["growth"] == pytest.approx(2e4)
