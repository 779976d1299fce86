"""The serve loop and its typed request / report, with a stand-in runner (no framework imported).

Worker processes and inline mode share ``parity.worker.serve``; these tests pin what it
does in this process, what a worker process writes, and the JSON both sides read.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import parity.worker.runners
from parity.worker import serving as worker
from parity.execution.executor import FrameworkRun
from parity.contracts.protocol import WorkerReport, WorkerRequest, f64_path
from parity.contracts.protocol import LoadReport, LoadSpec

SPEC = LoadSpec(path="/nowhere", task="base", class_name="Stand", weights="model.safetensors")


class StandIn:
    """A runner's surface as serve uses it: import, load, run, save, export."""

    fail_at = None

    def __init__(self, spec):
        self.spec = spec
        self.run_seconds = 0.0
        self.saved = None

    def import_framework(self):
        return 0.5

    released = 0
    tmp_seen = None

    @classmethod
    def release(cls):
        cls.released += 1

    def load(self):
        import os
        import tempfile

        os.write(1, b"stand-in loading\n")  # native output: file descriptor 1
        type(self).tmp_seen = tempfile.gettempdir()
        if self.fail_at == "load":
            raise ValueError("no weights here\nsecond line")
        return LoadReport("Stand", "model.safetensors", None, device="cpu", seconds=0.25)

    def run(self, arrays):
        if self.fail_at == "run":
            raise MemoryError()
        self.run_seconds = 0.125
        return {"logits": arrays["input_ids"] * 2.0, "hidden_states.0": arrays["input_ids"] + 1.0}

    def save(self, folder):
        self.saved = folder

    def export_weights(self):
        return {"w": np.ones(3, np.float32)}


@pytest.fixture
def stand_in(monkeypatch):
    StandIn.fail_at = None
    monkeypatch.setattr(parity.worker.runners, "runner_class", lambda fw: StandIn)
    return StandIn


ARRAYS = {"input_ids": np.arange(6, dtype=np.float32).reshape(2, 3)}


def test_request_round_trips_and_leaves_out_what_is_unset():
    req = WorkerRequest("pt", SPEC, batch="/w/batch.npz", out="/w/pt.npz", report="/w/pt.json",
                        explain={"float64": True}, block_imports=["jax"], loaded="/w/pt.loaded")
    data = json.loads(req.to_json())
    assert data["spec"] == {**SPEC.__dict__} and data["explain"] == {"float64": True}
    assert "save_to" not in data and "weights_out" not in data and data["batch_timeout"] == 3600
    assert WorkerRequest.from_json(req.to_json()) == req


def test_report_json_keeps_the_keys_the_worker_always_wrote():
    rep = WorkerReport("tf", status="error", error="ValueError: x", seconds={"total": 1.0}, traceback="tb",
                       arrays={"logits": np.zeros(1)})
    data = rep.to_dict()
    assert list(data) == ["framework", "status", "error", "load", "seconds", "outputs", "traceback"]
    assert WorkerReport.from_json(rep.to_json()) == rep  # arrays never travel in JSON
    assert WorkerReport.from_json(rep.to_json()).arrays is None
    assert f64_path("/w/pt.npz").as_posix() == "/w/pt.f64.npz"


def test_serve_in_process_keeps_outputs_and_says_each_stage(stand_in):
    stages = []
    rep = worker.serve(WorkerRequest("pt", SPEC), arrays=ARRAYS, stage=lambda fw, s: stages.append((fw, s)))
    assert stages == [("pt", "loading"), ("pt", "loaded"), ("pt", "running"), ("pt", "done")]
    assert rep.status == "ok" and rep.outputs == ["logits", "hidden_states.0"] and rep.load["device"] == "cpu"
    np.testing.assert_array_equal(rep.arrays["logits"], ARRAYS["input_ids"] * 2.0)
    assert (rep.seconds["import"], rep.seconds["load"], rep.seconds["run"]) == (0.5, 0.25, 0.125)
    assert rep.seconds["total"] >= 0 and rep.imported is None  # imports are the process's, not serve's
    run = FrameworkRun.from_report(rep, rep.arrays)
    assert run.names == rep.outputs and run.outputs is rep.arrays and run.load == rep.load


def test_serve_without_a_batch_saves_and_exports(stand_in, tmp_path):
    stages = []
    rep = worker.serve(WorkerRequest("tf", SPEC, save_to=str(tmp_path / "out"),
                                     weights_out=str(tmp_path / "w.npz")), stage=lambda fw, s: stages.append(s))
    assert rep.status == "ok" and "run" not in rep.seconds and rep.outputs == []
    assert stages == ["loading", "loaded", "done"]
    assert (tmp_path / "w.npz").is_file()


def test_serve_turns_failures_into_the_report(stand_in):
    stand_in.fail_at = "load"
    rep = worker.serve(WorkerRequest("pt", SPEC), arrays=ARRAYS)
    assert rep.status == "error" and rep.error == "ValueError: no weights here" and "ValueError" in rep.traceback
    stand_in.fail_at = "run"
    rep = worker.serve(WorkerRequest("pt", SPEC), arrays=ARRAYS)
    assert rep.status == "crashed" and rep.error.startswith("out of memory (MemoryError")


def test_serve_file_writes_outputs_then_the_report(stand_in, tmp_path, monkeypatch):
    monkeypatch.delenv(worker.FAULT_ENV, raising=False)
    np.savez(tmp_path / "batch.npz", **ARRAYS)
    req = WorkerRequest("pt", SPEC, batch=str(tmp_path / "batch.npz"), out=str(tmp_path / "pt.npz"),
                        report=str(tmp_path / "pt.json"), loaded=str(tmp_path / "pt.loaded"))
    (tmp_path / "pt.request.json").write_text(req.to_json())
    worker.serve_file(tmp_path / "pt.request.json")
    data = json.loads((tmp_path / "pt.json").read_text())
    assert data["status"] == "ok" and data["outputs"] == ["logits", "hidden_states.0"]
    assert "cpu" in data["seconds"] and isinstance(data["imported"], list)
    assert (tmp_path / "pt.loaded").exists() and not f64_path(tmp_path / "pt.npz").exists()
    with np.load(tmp_path / "pt.npz") as out:
        np.testing.assert_array_equal(out["hidden_states.0"], ARRAYS["input_ids"] + 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.npz", "pt.json", "pt.loaded", "pt.npz",
                                                          "pt.request.json"]  # no temp file left


def test_serve_loop_serves_each_line_with_its_own_log_and_environment(stand_in, tmp_path, monkeypatch):
    """A kept worker (parity.execution.pool): one request per line, output into that request's log, TMPDIR and the
    test hook from the line, the runner released after each."""
    monkeypatch.delenv(worker.FAULT_ENV, raising=False)
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", tempfile.gettempdir())  # the loop resets it: restored after
    np.savez(tmp_path / "batch.npz", **ARRAYS)
    lines = []
    for n in (1, 2):
        run = tmp_path / f"run{n}"
        run.mkdir()
        req = WorkerRequest("pt", SPEC, batch=str(tmp_path / "batch.npz"), out=str(run / "pt.npz"),
                            report=str(run / "pt.json"))
        (run / "pt.request.json").write_text(req.to_json())
        lines.append(json.dumps({"request": str(run / "pt.request.json"), "log": str(run / "pt.log"),
                                 "env": {"TMPDIR": str(run), worker.FAULT_ENV: ""}}) + "\n")
    StandIn.released = 0
    worker.serve_loop(lines)
    for n in (1, 2):
        run = tmp_path / f"run{n}"
        assert json.loads((run / "pt.json").read_text())["status"] == "ok"
        assert (run / "pt.log").read_text() == "stand-in loading\n"
    assert StandIn.released == 2 and StandIn.tmp_seen == str(tmp_path / "run2")
