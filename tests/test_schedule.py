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
    assert schedule.estimate("pt", native) == registry.get("pt").idle_bytes + 1000 * schedule.NATIVE_FACTOR
    assert schedule.estimate("tf", converted) == registry.get("tf").idle_bytes + 1000 * schedule.CONVERT_FACTOR


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
