"""The worker pool (parity.execution.pool): workers kept between checks, and isolation kept.

Every check here runs pt, tf and flax in worker processes. A kept worker (forked
from its key's template in a pool server, parity.execution.forkserver) must give the same bits
as a fresh interpreter, for every framework, also after a crash; a crashed,
hung or timed-out worker is reported for its own check, in the words a fresh one
gets, and replaced for the next; workers are recycled after N checks or above a
memory threshold, and results.json says which worker served each framework.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import numpy as np
import pytest

from parity.contracts.procs import alive as _alive

from parity.execution import pool
from parity.api import run_check
from parity.planning.config import CheckConfig

pytestmark = pytest.mark.slow
ALL = "pt,tf,flax"


def _check(path, **options) -> tuple[dict, dict]:
    """Results (as a dict) and every framework's outputs, copied out of the worker's files."""
    outputs = {}

    def keep(fw, arrays):
        outputs[fw] = {name: np.array(arrays[name]) for name in arrays}

    results = run_check(CheckConfig(path=str(path), frameworks=options.pop("frameworks", ALL), **options)
                        .validated(), on_outputs=keep)
    return results.to_dict(), outputs


def _same_bits(a: dict, b: dict, frameworks) -> None:
    for fw in frameworks:
        assert sorted(a[fw]) == sorted(b[fw]), fw
        for name in a[fw]:
            assert a[fw][name].dtype == b[fw][name].dtype and a[fw][name].tobytes() == b[fw][name].tobytes(), \
                (fw, name)


def _served(res: dict) -> dict:
    return res["schedule"]["pool"]["workers"]


@contextmanager
def _server(path):
    """A pool server of our own (its workers forked from templates, parity.execution.forkserver) for the checks
    inside; yields a function giving its status."""
    from parity.execution import pool_client

    pool_client.start(str(path))
    client = pool_client.SharedPool(str(path))
    try:
        with pool.use(client):
            yield lambda: client.call("status")
    finally:
        client.close()
        pool_client.stop(str(path))


def test_reused_workers_give_the_bits_of_fresh_ones_also_after_a_crash(tiny, monkeypatch, tmp_path):
    """Kept workers forked from a template (a pool server's), against fresh interpreters."""
    with pool.use(None):  # no pool (also under the tests' shared one): one new process per framework
        fresh_pt, fresh_out = _check(tiny / "bert-pt")
        fresh_tf, fresh_tf_out = _check(tiny / "bert-tf")  # TF native; pt and flax converted from it
    assert "pool" not in fresh_pt["schedule"]
    with _server(tmp_path / "p.sock") as status:
        first, first_out = _check(tiny / "bert-pt")
        assert {fw: w["check"] for fw, w in _served(first).items()} == {"pt": 1, "tf": 1, "flax": 1}
        assert {w["fresh_because"] for w in _served(first).values()} == {"first"}
        other, other_out = _check(tiny / "bert-tf")      # another checkpoint: tf's and flax's workers are kept;
        # pt converts from TF weights, so it imports TensorFlow: a worker of its own, which first made the
        # PyTorch weights that flax loads (executor._bridge; fresh, flax's worker bridges in place)
        assert {fw: w["check"] for fw, w in _served(other).items()} == {"pt": 2, "tf": 2, "flax": 2}
        assert _served(other)["pt"]["pid"] != _served(first)["pt"]["pid"]
        assert _served(other)["flax"]["pid"] == _served(first)["flax"]["pid"]
        assert other["frameworks"]["flax"]["imported"] == ["jax"]
        assert fresh_tf["frameworks"]["flax"]["imported"] == ["jax", "tensorflow", "torch"]
        _same_bits(fresh_tf_out, other_out, ["pt", "tf", "flax"])  # the same bytes either way
        again, again_out = _check(tiny / "bert-pt")
        _same_bits(fresh_out, first_out, ["pt", "tf", "flax"])
        _same_bits(fresh_out, again_out, ["pt", "tf", "flax"])
        assert [c["outputs"] for c in again["comparisons"]] == [c["outputs"] for c in fresh_pt["comparisons"]]

        monkeypatch.setenv("PARITY_TEST_FAULT", "tf:segfault")  # sent with the request: the same workers
        crashed, _ = _check(tiny / "bert-pt")
        tf = crashed["frameworks"]["tf"]
        assert tf["status"] == "crashed" and tf["signal"] == "SIGSEGV", tf
        assert tf["error"].startswith("worker died (SIGSEGV: segmentation fault in native code)"), tf
        assert _served(crashed)["tf"]["pid"] == _served(again)["tf"]["pid"]  # the kept worker crashed
        assert crashed["comparisons"][0]["passed"]  # pt vs flax still compared
        monkeypatch.delenv("PARITY_TEST_FAULT")

        after, after_out = _check(tiny / "bert-pt")
        served = _served(after)
        assert served["tf"]["pid"] != _served(crashed)["tf"]["pid"]
        assert served["tf"] == {"pid": served["tf"]["pid"], "check": 1, "fresh_because": "crashed or stopped",
                                "forked": True}  # from the template: milliseconds, no imports
        assert (served["pt"]["check"], served["flax"]["check"]) == (4, 5)
        assert after["passed"]
        _same_bits(fresh_out, after_out, ["pt", "tf", "flax"])
        assert all(w["forked"] for r in (first, other, again, crashed, after) for w in _served(r).values())
        now = status()
        idle = {w["pid"] for w in now["idle"]}
        assert set(w["pid"] for w in served.values()) < idle  # and bert-tf's pt
        assert {t["framework"] for t in now["templates"]} == {"pt", "tf", "flax"}  # pt: two keys, two templates
        pids = idle | {t["pid"] for t in now["templates"]}
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]  # the server's end stops its workers and templates


def test_a_template_that_dies_before_it_forks_leaves_the_request_to_a_new_interpreter(tiny, tmp_path):
    """parity.execution.forkserver: a worker is lent at once under a ticket while its template imports; when the
    template dies first, the server gives the same request to a new interpreter and says so."""
    import signal
    import threading

    from parity.execution import pool_client

    sock = tmp_path / "p.sock"
    killed = []

    def kill_the_first_template():
        probe = pool_client.SharedPool(str(sock))
        try:
            deadline = time.monotonic() + 60
            while len(killed) < 2 and time.monotonic() < deadline:  # pt's and flax's
                for template in probe.call("status")["templates"]:
                    if template["pid"] not in killed:
                        os.kill(template["pid"], signal.SIGKILL)  # mid-import: it has forked nothing
                        killed.append(template["pid"])
                time.sleep(0.005)
        finally:
            probe.close()

    with _server(sock) as status:
        killer = threading.Thread(target=kill_the_first_template)
        killer.start()
        res, _ = _check(tiny / "bert-pt", frameworks="pt,flax")
        killer.join()
        after, _ = _check(tiny / "bert-pt", frameworks="pt,flax")  # the idle workers again
        now = status()
    assert len(killed) == 2 and res["passed"], res["frameworks"]
    for fw in ("pt", "flax"):
        assert _served(res)[fw] == {"pid": _served(res)[fw]["pid"], "check": 1, "forked": False,
                                    "fresh_because": "its template could not fork it"}, _served(res)
        assert _served(after)[fw]["pid"] == _served(res)[fw]["pid"] and _served(after)[fw]["check"] == 2
    assert (now["started"], now["forked"], now["templates"]) == (4, 2, [])


def test_a_worker_stopped_before_its_template_forked_it_never_runs(tiny, tmp_path):
    """A --timeout shorter than any framework's import: the check's workers are stopped while their
    templates import (the server answers at once, it never waits for a template); each is killed when its
    pid comes, and the next check forks new ones from the same templates."""
    with _server(tmp_path / "p.sock") as status:
        cut, _ = _check(tiny / "bert-pt", frameworks="pt,flax", timeout=0.2)
        after, _ = _check(tiny / "bert-pt", frameworks="pt,flax")
        now = status()
    for fw in ("pt", "flax"):
        run = cut["frameworks"][fw]
        assert run["status"] == "crashed" and run["timed_out"] is True and run["signal"] == "SIGKILL", run
        assert _served(cut)[fw]["pid"] is None  # it never ran
        assert _served(after)[fw] == {"pid": _served(after)[fw]["pid"], "check": 1, "forked": True,
                                      "fresh_because": "crashed or stopped"}
    assert after["passed"]
    assert (now["started"], now["forked"], len(now["templates"]), len(now["idle"])) == (4, 4, 2, 2), now


def test_recycled_after_n_checks_and_above_the_memory_threshold(tiny, monkeypatch):
    from parity.execution import schedule

    with pool.session(max_checks=2):
        runs = [_check(tiny / "bert-pt", frameworks="pt,flax")[0]]
        with monkeypatch.context() as m:  # memory short: one worker after another, the same kept workers
            m.setattr(schedule, "available_bytes", lambda: 1 << 30)  # each fits alone, not both at once
            runs.append(_check(tiny / "bert-pt", frameworks="pt,flax")[0])
        runs.append(_check(tiny / "bert-pt", frameworks="pt,flax")[0])
    assert [r["schedule"]["max_workers"] for r in runs] == [2, 1, 2]
    served = [_served(r) for r in runs]
    assert [s["pt"]["check"] for s in served] == [1, 2, 1]
    assert served[2]["pt"]["pid"] != served[0]["pt"]["pid"] == served[1]["pt"]["pid"]
    assert served[2]["flax"]["fresh_because"] == "recycled after 2 checks"
    assert not any(w["forked"] for s in served for w in s.values())  # a pool in this process starts interpreters
    assert runs[2]["schedule"]["pool"]["max_checks"] == 2
    assert all(r["passed"] for r in runs)

    with pool.session(max_rss_bytes=1):  # every worker is above one byte: never reused
        runs = [_check(tiny / "bert-pt", frameworks="pt,flax")[0] for _ in range(2)]
    assert _served(runs[1])["pt"]["check"] == 1
    assert _served(runs[1])["pt"]["fresh_because"] == "recycled above 1 bytes resident"
    assert runs[1]["schedule"]["pool"]["max_rss_bytes"] == 1


def test_a_timed_out_worker_is_reported_and_replaced(tiny, monkeypatch):
    timeout = 15  # a warm worker loads the tiny BERT in about a second; the hung one never reports
    with pool.session():
        warm, _ = _check(tiny / "bert-pt")
        monkeypatch.setenv("PARITY_TEST_FAULT", "tf:hang")
        hung, _ = _check(tiny / "bert-pt", timeout=timeout)
        monkeypatch.delenv("PARITY_TEST_FAULT")
        tf = hung["frameworks"]["tf"]
        assert tf["status"] == "crashed" and tf["timed_out"] is True and tf["signal"] == "SIGKILL", tf
        assert tf["error"].startswith(f"worker stopped after the --timeout of {timeout}s (SIGKILL)"), tf
        assert hung["frameworks"]["pt"]["status"] == hung["frameworks"]["flax"]["status"] == "ok"
        assert not _alive(_served(hung)["tf"]["pid"])
        after, _ = _check(tiny / "bert-pt")
    assert after["passed"] and _served(after)["tf"]["fresh_because"] == "crashed or stopped"
    assert _served(after)["pt"]["pid"] == _served(warm)["pt"]["pid"]



def test_pool_limits_must_be_positive():
    from parity.contracts.errors import UsageError

    with pytest.raises(UsageError, match="pool limits must be positive"):
        pool.Pool(max_checks=0)
