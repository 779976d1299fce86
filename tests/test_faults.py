"""Faults: a worker killed, segfaulting, out of memory or hanging, and Ctrl-C.

Workers are made to fail for real: SIGKILL sent by this test to the worker's
pid (the executor writes ``<fw>.pid`` into its workdir), or the documented
test hook PARITY_TEST_FAULT (a NULL read through ctypes, an allocation under a
lowered RLIMIT_AS, a sleep that only --timeout ends). The faulty framework is
tf; pt and flax must still compare.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity.contracts.procs import alive as _alive

from parity.contracts.atomic import write_atomic
from parity.contracts.results import Results

pytestmark = pytest.mark.slow
ALL = "pt,tf,flax"


def _start(args, tmp: Path, fault: str | None = None) -> subprocess.Popen:
    (tmp / "tmpdir").mkdir(exist_ok=True)
    # A user's single check: fresh workers, none outlives the run (faults under kept workers: test_pool*.py)
    env = {**os.environ, "TMPDIR": str(tmp / "tmpdir"), "PARITY_POOL": "0"}
    env.pop("PARITY_TEST_FAULT", None)
    if fault:
        env["PARITY_TEST_FAULT"] = fault
    # As from a terminal: a test run started in the background (`make test &`, some CI runners)
    # passes SIGINT on ignored, and Python keeps an ignored SIGINT ignored, so Ctrl-C would never arrive.
    return subprocess.Popen([sys.executable, "-m", "parity", "check", *map(str, args),
                             "--report-dir", str(tmp / "out")], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(pred, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pred()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _workdir(tmp: Path) -> Path:
    return _wait_for(lambda: next((tmp / "tmpdir").glob("parity-*"), None))



def _finish(proc: subprocess.Popen, tmp: Path, worker_pids=()):
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    assert not list((tmp / "tmpdir").glob("parity-*"))   # workdir (and worker temp files) removed
    assert not [p for p in worker_pids if _alive(p)]      # no worker outlives the run
    return proc.returncode, out, err, json.loads((tmp / "out" / "results.json").read_text())


def _others_still_compare(res: dict):
    assert res["frameworks"]["pt"]["status"] == res["frameworks"]["flax"]["status"] == "ok"
    (comp,) = res["comparisons"]
    assert (comp["reference"], comp["candidate"]) == ("pt", "flax") and comp["passed"]
    assert len(comp["outputs"]) == 8  # logits, hidden_states.0-3, attentions.0-2: complete for what ran


def test_worker_killed_mid_run_is_crashed_with_its_signal(tiny, tmp_path):
    proc = _start([tiny / "bert-pt", "--frameworks", ALL], tmp_path)
    work = _workdir(tmp_path)
    pid = int(_wait_for(lambda: (work / "tf.pid").is_file() and (work / "tf.pid").read_text()))
    time.sleep(1.0)  # it is importing TensorFlow / loading the model now
    os.kill(pid, signal.SIGKILL)
    code, out, err, res = _finish(proc, tmp_path, [pid])
    assert code == 3 and res["exit_code"] == 3 and not res["passed"]
    tf = res["frameworks"]["tf"]
    assert tf["status"] == "crashed" and tf["signal"] == "SIGKILL" and tf["returncode"] == -9
    assert "worker died (SIGKILL" in tf["error"]
    assert res["complete"] is True and res["interrupted"] is False
    _others_still_compare(res)
    assert "crashed" in out and "exit 3" in out


@pytest.mark.parametrize("kind,signal_name,words", [
    ("segfault", "SIGSEGV", "worker died (SIGSEGV"),
    ("oom", None, "out of memory"),
])
def test_worker_segfault_or_oom_is_crashed(tiny, tmp_path, kind, signal_name, words):
    proc = _start([tiny / "bert-pt", "--frameworks", ALL], tmp_path, fault=f"tf:{kind}@load")
    code, out, err, res = _finish(proc, tmp_path)
    assert code == 3 and res["exit_code"] == 3
    tf = res["frameworks"]["tf"]
    assert tf["status"] == "crashed" and words in tf["error"], tf
    assert tf.get("signal") == signal_name
    assert res["complete"] is True
    _others_still_compare(res)


def test_hanging_worker_is_stopped_by_timeout(tiny, tmp_path):
    # pt and flax (fresh) finished in about 11 s on 2 cores busy with the rest of the suite; tf never does
    timeout = 45
    t0 = time.monotonic()
    proc = _start([tiny / "bert-pt", "--frameworks", ALL, "--timeout", timeout], tmp_path, fault="tf:hang@load")
    work = _workdir(tmp_path)
    pid = int(_wait_for(lambda: (work / "tf.pid").is_file() and (work / "tf.pid").read_text()))
    code, out, err, res = _finish(proc, tmp_path, [pid])
    assert time.monotonic() - t0 < timeout + 60
    assert code == 3 and res["exit_code"] == 3
    tf = res["frameworks"]["tf"]
    assert tf["status"] == "crashed" and tf["timed_out"] is True and tf["signal"] == "SIGKILL"
    assert f"--timeout of {timeout}s" in tf["error"]
    _others_still_compare(res)


def test_ctrl_c_writes_results_marked_incomplete(tiny, tmp_path):
    """pt and flax finish, tf hangs, the user presses Ctrl-C: what ran is kept, the file says incomplete."""
    proc = _start([tiny / "bert-pt", "--frameworks", ALL], tmp_path, fault="tf:hang@load")
    work = _workdir(tmp_path)
    pids = [int(_wait_for(lambda fw=fw: (work / f"{fw}.pid").is_file() and (work / f"{fw}.pid").read_text()))
            for fw in ("pt", "tf", "flax")]
    _wait_for(lambda: (work / "pt.json").is_file() and (work / "flax.json").is_file())
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    code, out, err, res = _finish(proc, tmp_path, pids)
    assert code == 130 and res["exit_code"] == 130 and not res["passed"]
    assert res["complete"] is False and res["interrupted"] is True
    assert res["frameworks"]["tf"]["status"] == "interrupted"
    _others_still_compare(res)
    assert Results.load(tmp_path / "out" / "results.json").complete is False
    assert "incomplete" in out and err.strip().splitlines() == [
        f"parity: interrupted; {tmp_path / 'out' / 'results.json'} is marked complete: false"]


def test_ctrl_c_before_anything_ran(tiny, tmp_path):
    proc = _start([tiny / "bert-pt", "--frameworks", "pt,flax"], tmp_path)
    work = _workdir(tmp_path)
    pids = [int(_wait_for(lambda fw=fw: (work / f"{fw}.pid").is_file() and (work / f"{fw}.pid").read_text()))
            for fw in ("pt", "flax")]
    proc.send_signal(signal.SIGINT)
    code, out, err, res = _finish(proc, tmp_path, pids)
    assert code == 130 and res["complete"] is False and res["comparisons"] == []
    assert {fw["status"] for fw in res["frameworks"].values()} == {"interrupted"}


def test_sigterm_stops_like_ctrl_c(tiny, tmp_path):
    """CI cancels with SIGTERM: the same clean stop."""
    proc = _start([tiny / "bert-pt", "--frameworks", "pt,flax"], tmp_path)
    work = _workdir(tmp_path)
    pids = [int(_wait_for(lambda fw=fw: (work / f"{fw}.pid").is_file() and (work / f"{fw}.pid").read_text()))
            for fw in ("pt", "flax")]
    proc.terminate()
    code, out, err, res = _finish(proc, tmp_path, pids)
    assert code == 130 and res["interrupted"] is True


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_atomic(target, '{"old": true}')

    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, '{"new": true}' * 1000)
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
