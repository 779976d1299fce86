"""Suites spread out: CI shards (--parity-shard I/N) and machines reached through xdist's execnet gateways.

The gateway test starts execnet's own socket server on 127.0.0.1 (in a folder of its
own, so the remote side writes its reports elsewhere than the controller) and stops it
at the end; the index the controller writes must match a local run's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _plugin_args() -> tuple:
    """Load the plugin with -p unless its pytest11 entry point is installed (as tests/test_plugin.py)."""
    from importlib.metadata import entry_points

    installed = any(ep.value == "parity.pytest_plugin" for ep in entry_points(group="pytest11"))
    return () if installed else ("-p", "parity.pytest_plugin")


PLUGIN = (*_plugin_args(), "-p", "no:cacheprovider")
pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]


def _suite(pytester, tiny, frameworks="pt,flax") -> None:
    pytester.makefile(".toml", parity=f"""
        frameworks = "{frameworks}"
        [[checks]]
        name = "tiny"
        checkpoint = "{tiny / 'bert-pt'}"
        [[checks]]
        name = "altered"
        checkpoint = "{tiny / 'bert-flax-altered'}"
        [[checks]]
        name = "tf-weights"
        checkpoint = "{tiny / 'bert-tf'}"
    """)
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n\n"
                                   "def test_two():\n    assert 2 * 2 == 4\n")


def _collected(pytester, *args) -> list[str]:
    r = pytester.runpytest_subprocess(*PLUGIN, "--collect-only", "-q", *args, timeout=300)
    assert r.ret == 0, r.stdout.str()
    return [line for line in r.stdout.lines if "::" in line]


def test_two_shards_together_run_the_whole_suite_once(pytester, tiny):
    _suite(pytester, tiny, frameworks="pt,tf,flax")  # two pairs per check (no stand-in items)
    whole = _collected(pytester)
    assert len(whole) == 3 * 2 + 2
    shards = [_collected(pytester, "--parity-shard", f"{i}/2") for i in (1, 2)]
    assert sorted(shards[0] + shards[1]) == sorted(whole) and not set(shards[0]) & set(shards[1])
    assert all(shards)
    for check in ("tiny", "altered", "tf-weights"):  # a check's pairs never split: its weights load once
        assert len({n for n, shard in enumerate(shards) for item in shard if f"::{check}[" in item}) == 1

    r = pytester.runpytest_subprocess(*PLUGIN, "--collect-only", "--parity-shard", "3/2", timeout=300)
    assert r.ret == 4 and "parity: error: --parity-shard '3/2' is not I/N with 1 <= I <= N" in r.stderr.str()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(report: Path) -> list[dict]:
    """Index rows without what differs between machines (node id prefix, worker, pid)."""
    index = json.loads((report / "index.json").read_text())
    keep = ("check", "pair", "verdict", "first_divergence", "error", "results", "checkpoint")
    return sorted(({**{k: row[k] for k in keep}, "item": row["nodeid"].split("parity.toml::")[-1]}
                   for row in index["items"]), key=lambda r: r["item"])


def _verdicts(report: Path, rows: list[dict]) -> dict:
    out = {}
    for row in rows:
        res = json.loads((report / row["results"]).read_text())
        out[row["check"]] = (res["passed"], [(c["reference"], c["candidate"], c["passed"], c["first_divergence"])
                                             for c in res["comparisons"]])
    return out


def test_suite_over_a_loopback_socket_gateway_matches_a_local_run(pytester, tiny, tmp_path_factory):
    import execnet

    _suite(pytester, tiny)
    remote = tmp_path_factory.mktemp("remote")  # the "other machine"'s working folder
    port = _free_port()
    server = Path(execnet.__file__).parent / "script" / "socketserver.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(server), f"127.0.0.1:{port}"], cwd=remote, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Entering Accept loop" in proc.stdout.readline()
        t0 = time.monotonic()
        spread = pytester.runpytest_subprocess(
            *PLUGIN, "--tx", f"socket=127.0.0.1:{port}", "--rsyncdir", str(pytester.path), "--dist", "loadgroup",
            str(pytester.path), "--parity-report-dir", "rep", "-W", "ignore::DeprecationWarning", timeout=900)
        assert time.monotonic() - t0 < 900
    finally:
        proc.kill()
        proc.wait()
    local = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:xdist", "--parity-report-dir", "rep-local",
                                          timeout=900)
    spread.assert_outcomes(passed=4, failed=1)
    local.assert_outcomes(passed=4, failed=1)
    rep, rep_local = pytester.path / "rep", pytester.path / "rep-local"
    # the remote side wrote into its own folder; the controller gathered entries and results over the channel
    assert (remote / "pyexecnetcache" / "rep" / "tiny" / "results.json").is_file()
    assert _rows(rep) == _rows(rep_local)
    rows = _rows(rep)
    assert [(r["check"], r["verdict"]) for r in rows] == [("altered", "fail"), ("tf-weights", "pass"),
                                                         ("tiny", "pass")]
    assert _verdicts(rep, rows) == _verdicts(rep_local, rows)
    for check in ("tiny", "altered", "tf-weights"):  # rendered here from the shipped results
        assert (rep / check / "report.html").is_file() and (rep / check / "console.txt").is_file()
    index = json.loads((rep / "index.json").read_text())
    assert index["counts"] == json.loads((rep_local / "index.json").read_text())["counts"] == \
        {"pass": 2, "fail": 1, "error": 0}
    assert {row["worker"] for row in index["items"]} == {"gw0"}
    assert (rep / "index.html").is_file() and "altered/report.html" in (rep / "index.html").read_text()


def test_xdist_workers_of_a_run_share_one_pool_that_ends_with_the_run(pytester, tiny, monkeypatch):
    monkeypatch.delenv("PARITY_POOL_SOCKET", raising=False)  # not the tests' pool: the run starts its own
    _suite(pytester, tiny)
    r = pytester.runpytest_subprocess(*PLUGIN, "-n", "2", "--dist", "loadgroup", "parity.toml",
                                      "--parity-report-dir", "rep", "--parity-pool-max-templates", "2", timeout=900)
    assert r.ret == 1, r.stdout.str()  # the altered check fails, the others pass
    pools = {p.parent.name: json.loads(p.read_text())["schedule"]["pool"]
             for p in (pytester.path / "rep").glob("*/results.json")}
    assert sorted(pools) == ["altered", "tf-weights", "tiny"]
    (shared,) = {p["shared"] for p in pools.values()}  # one server for both xdist workers
    # its workers forked from templates (parity.execution.forkserver), at most two of them kept
    assert {p["max_templates"] for p in pools.values()} == {2}
    assert all(w["forked"] for p in pools.values() for w in p["workers"].values()), pools
    assert Path(shared).name.startswith("parity-pool-")
    # Every check's flax worker is a plain one (the TF weights are bridged by the PyTorch worker): with at
    # most two checks at once, the third borrows a worker an earlier check gave back.
    assert len({p["workers"]["flax"]["pid"] for p in pools.values()}) <= 2, pools
    deadline = time.monotonic() + 30
    while Path(shared).exists() and time.monotonic() < deadline:  # it watches the run's controller
        time.sleep(0.2)
    assert not Path(shared).exists()
