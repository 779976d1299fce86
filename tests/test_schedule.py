"""Workers in parallel when memory allows, one at a time when it is short (parity/schedule.py)."""

from types import SimpleNamespace

import pytest

from parity.execution import schedule
from parity.contracts import registry


def _spec(tmp_path, name, size, converted_from=None):
    (tmp_path / name).write_bytes(b"\0" * size)
    return SimpleNamespace(path=str(tmp_path), weights=name, converted_from=converted_from, cache_hit=None)


def test_estimate_counts_the_framework_and_the_weights(tmp_path):
    native = _spec(tmp_path, "model.safetensors", 1000)
    converted = _spec(tmp_path, "model.safetensors", 1000, converted_from="pt")
    assert schedule.estimate("pt", native) == registry.get("pt").idle_bytes + 1000 * registry.get("pt").load_factor
    assert schedule.estimate("tf", converted) == registry.get("tf").idle_bytes + 1000 * registry.get("tf").convert_factor


def test_plan_goes_one_at_a_time_only_when_memory_is_short(tmp_path, monkeypatch):
    specs = {fw: _spec(tmp_path, "model.safetensors", 100 << 20, None if fw == "pt" else "pt")
             for fw in ("pt", "tf", "flax")}
    need = sum(schedule.estimate(fw, s) for fw, s in specs.items())
    monkeypatch.setenv("PARITY_MEMORY_BYTES", str(int(need / schedule.HEADROOM) + 1))
    roomy = schedule.plan(specs)
    assert roomy["parallel"] and roomy["max_workers"] == 3 and "all workers at once" in roomy["reason"]
    monkeypatch.setenv("PARITY_MEMORY_BYTES", str(int(need / schedule.HEADROOM) - (1 << 20)))
    short = schedule.plan(specs)
    assert not short["parallel"] and short["max_workers"] == 1 and "one worker at a time" in short["reason"]
    assert short["estimate_bytes"] == {fw: schedule.estimate(fw, s) for fw, s in specs.items()}


@pytest.mark.slow
def test_short_memory_runs_workers_one_after_another(cli, tiny):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf,flax", env={"PARITY_MEMORY_BYTES": str(1 << 30)})
    assert r.code == 0, r.out + r.err
    sched = r.results["schedule"]
    assert not sched["parallel"] and sched["max_workers"] == 1 and sched["available_bytes"] == 1 << 30
    spans = sorted((w["started"], w["ended"]) for w in sched["workers"].values())
    assert [fw for fw, _ in sorted(sched["workers"].items(), key=lambda kv: kv[1]["started"])] == ["pt", "tf", "flax"]
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end  # the next worker starts only after the previous one finished
    # with the machine's real memory the three tiny-model workers run at once
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf,flax")
    assert r.results["schedule"]["parallel"] and r.code == 0


def test_a_float16_file_counts_as_its_float32_weights(tmp_path):
    half = _spec(tmp_path, "model.safetensors", 1000)
    half.weights_dtype = "float16"
    assert schedule.float32_bytes(half) == 2000
    half.weights_dtype = "float16,float32"  # mixed: the file's own size is the best guess
    assert schedule.float32_bytes(half) == 1000


def test_weights_too_big_for_one_framework_alone_are_refused(tmp_path, monkeypatch):
    """A 1.1B-parameter float32 checkpoint (4.4 GB) converted for TF on a machine with 12 GiB available."""
    from parity.contracts.errors import UsageError

    size = 4_400_000_000
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: the size is what the schedule reads
    specs = {"pt": SimpleNamespace(path=str(tmp_path), weights=path.name, converted_from=None, cache_hit=None),
             "tf": SimpleNamespace(path=str(tmp_path), weights=path.name, converted_from="pt", cache_hit=None)}
    monkeypatch.setenv("PARITY_MEMORY_BYTES", str(12 << 30))
    with pytest.raises(UsageError) as err:
        schedule.refuse_if_too_big(specs, {"pt": 0, "tf": 0})
    assert str(err.value).startswith("tf alone needs an estimated 17.3 GiB and 12.0 GiB is available")
    assert "x 4 (converting)" in str(err.value) and "--frameworks" in err.value.note
    assert "--batch-size" in err.value.note
    # with 20 GiB each fits alone but not both at once: one at a time, in the order given (reference first)
    monkeypatch.setenv("PARITY_MEMORY_BYTES", str(20 << 30))
    schedule.refuse_if_too_big(specs)
    short = schedule.plan(specs)
    assert short["max_workers"] == 1 and short["reason"].endswith("one worker at a time, pt first")
    # outputs count too: attention maps grow with the batch
    config = {"hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32, "vocab_size": 32000}
    small, big = (schedule.outputs_bytes(config, rows, 512, ["hidden_states", "attentions", "logits"])
                  for rows in (2, 64))
    assert big == 32 * small and big > 20 << 30
    with pytest.raises(UsageError):
        schedule.refuse_if_too_big({"pt": specs["pt"]}, {"pt": big})


@pytest.mark.slow
def test_refusal_before_any_worker_and_reference_first(cli, tiny, tmp_path):
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf", "--report-dir", tmp_path / "out",
            env={"PARITY_MEMORY_BYTES": str(800 << 20)})
    assert r.code == 2 and r.err.startswith("parity: error: tf alone needs an estimated") and "Note:" in r.err
    assert "Traceback" not in r.err and not (tmp_path / "out" / "results.json").exists()
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf", "--reference", "tf",
            env={"PARITY_MEMORY_BYTES": str(1 << 30)})
    assert r.code == 0, r.out + r.err
    workers = r.results["schedule"]["workers"]
    assert workers["tf"]["ended"] <= workers["pt"]["started"]  # the reference first, then the other
    assert "schedule: estimated" in r.out and "one worker at a time, tf first" in r.out
