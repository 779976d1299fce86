"""One pool shared by several processes (parity.execution.pool_server): `parity pool start|status|stop` and
PARITY_POOL_SOCKET, as a CI script's many `parity check` commands use them.

Each test starts a server of its own (not the test run's shared one) and stops it.
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

from parity.execution import pool_client
from parity.execution.pool_limits import SOCKET_ENV

pytestmark = pytest.mark.slow


def _served(report_dir: Path) -> dict:
    return json.loads((report_dir / "results.json").read_text())["schedule"]["pool"]



@pytest.fixture
def own_pool(cli, tmp_path):
    """A server started with `parity pool start --max-idle 2`; its socket, stopped at the end."""
    sock = tmp_path / "p.sock"
    r = cli("pool", "start", "--socket", sock, "--max-idle", "2")
    assert r.code == 0 and r.out == f"export {SOCKET_ENV}={sock}\n", (r.code, r.out, r.err)
    yield str(sock)
    if pool_client.answers(str(sock)):
        pool_client.stop(str(sock))


def test_checks_in_separate_commands_share_the_servers_workers(cli, tiny, tmp_path, own_pool):
    env = {SOCKET_ENV: own_pool}
    runs = []
    for i, frameworks in enumerate(["pt,flax", "pt,flax", "pt,tf,flax", "pt,tf,flax"]):
        r = cli("check", tiny / "bert-pt", "--frameworks", frameworks, "--report-dir", tmp_path / f"r{i}", env=env)
        assert r.code == 0, r.err
        runs.append(_served(tmp_path / f"r{i}"))
    assert {r["shared"] for r in runs} == {own_pool} and runs[0]["max_idle"] == 2
    first, second = runs[0]["workers"], runs[1]["workers"]
    assert {fw: w["check"] for fw, w in second.items()} == {"pt": 2, "flax": 2}  # another process, same workers
    assert {fw: w["pid"] for fw, w in second.items()} == {fw: w["pid"] for fw, w in first.items()}
    # The third check gave three workers back to a pool that keeps two idle: the least recently used stopped,
    # and the fourth check says why its worker is fresh.
    fourth = runs[3]["workers"]
    fresh = {fw: w["fresh_because"] for fw, w in fourth.items() if w["fresh_because"]}
    assert list(fresh.values()) == ["stopped when idle: at most 2 idle workers are kept"], fourth
    assert all(w["check"] > 1 for fw, w in fourth.items() if fw not in fresh)

    # Every worker was forked from its key's template (parity.execution.forkserver), the templates are listed too.
    assert all(w["forked"] for r in runs for w in r["workers"].values()), runs
    status = cli("pool", "status", env=env)
    head = status.out.splitlines()[0]
    assert status.code == 0 and "2 idle" in head and "forked from" in head and "4 templates" in head, status.out
    idle = [line.split() for line in status.out.splitlines()[1:] if "check(s)" in line]
    templates = [line.split() for line in status.out.splitlines()[1:] if "template" in line]
    assert len(idle) == 2 and {line[0] for line in idle} <= {"pt", "tf", "flax"}, status.out
    assert {line[0] for line in templates} == {"pt", "tf", "flax"}, status.out
    pids = [int(line[2]) for line in idle + templates]

    stopped = cli("pool", "stop", env=env)
    assert stopped.code == 0 and stopped.out == f"stopped the parity pool at {own_pool}\n"
    assert not Path(own_pool).exists()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]  # the server's end stops its workers


def test_a_command_killed_mid_check_has_its_workers_stopped(tiny, tmp_path, own_pool):
    env = {**os.environ, SOCKET_ENV: own_pool, "PARITY_TEST_FAULT": "tf:hang"}
    proc = subprocess.Popen([sys.executable, "-m", "parity", "check", str(tiny / "bert-pt"), "--report-dir",
                             str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = pool_client.SharedPool(own_pool)
    try:
        deadline = time.monotonic() + 300
        while probe.call("status")["lent"] < 3:  # pt, tf (hanging) and flax are this command's
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        while probe.call("status")["lent"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        probe.close()
    env.pop("PARITY_TEST_FAULT")
    after = subprocess.run([sys.executable, "-m", "parity", "check", str(tiny / "bert-pt"), "--report-dir",
                            str(tmp_path / "after")], env=env, capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    workers = _served(tmp_path / "after")["workers"]
    assert {w["fresh_because"] for w in workers.values()} == \
        {"the process that held the last one ended during its check"}, workers


def test_a_pool_that_does_not_answer_is_one_line_and_exit_2(cli, tiny, tmp_path):
    gone = tmp_path / "gone.sock"
    r = cli("check", tiny / "bert-pt", env={SOCKET_ENV: str(gone)})
    assert r.code == 2 and r.out == "" and "Traceback" not in r.err, r.err
    assert r.err.startswith(f"parity: error: no parity pool answers at {gone}") and len(r.err.splitlines()) == 1
    assert f"Note: start one with `parity pool start`, or unset {SOCKET_ENV}" in r.err
    assert not r.report_dir.exists()  # nothing written, no worker started


@pytest.mark.parametrize("args, message", [
    (["pool", "status"], f"no pool named: {SOCKET_ENV} is not set. Note: pass --socket PATH"),
    (["pool", "stop"], f"no pool named: {SOCKET_ENV} is not set. Note: pass --socket PATH"),
    (["pool", "start", "--max-checks", "0"], "pool limits must be positive (max checks 0"),
    (["pool", "start", "--max-idle", "x"], "argument --max-idle: invalid int value: 'x'"),
    (["pool", "restart"], "argument action: invalid choice: 'restart'"),
])
def test_bad_pool_commands_are_one_line_and_exit_2(cli, args, message):
    r = cli(*args, env={SOCKET_ENV: ""})
    assert r.code == 2 and r.out == "" and len(r.err.splitlines()) == 1, (r.code, r.out, r.err)
    assert r.err.startswith("parity: error: ") and message in r.err, r.err


def test_starting_a_second_server_on_a_live_socket_is_refused(cli, own_pool):
    r = cli("pool", "start", "--socket", own_pool)
    assert r.code == 2 and r.err.startswith(f"parity: error: a parity pool already answers at {own_pool}"), r.err
    assert pool_client.answers(own_pool)  # the first one still serves


def test_the_server_ends_with_the_process_it_watches(tmp_path):
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        path = pool_client.start(str(tmp_path / "w.sock"), watch_pid=watched.pid)
        assert pool_client.answers(path)
    finally:
        watched.send_signal(signal.SIGKILL)
        watched.wait()
    deadline = time.monotonic() + 10
    while Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(path).exists() and not pool_client.answers(path)


def test_a_call_cut_short_leaves_the_next_call_its_own_answer(own_pool):
    """Ctrl-C between sending a call and reading its answer (the CLI turns SIGTERM into one too)."""
    client = pool_client.SharedPool(own_pool)
    try:
        client.sock.sendall(b'{"op": "status"}\n')  # sent, never read: as a call interrupted after sendall
        client.owed += 1
        assert client.call("hello")["version"] == pool_client.VERSION
        with pytest.raises(pool_client.PoolError, match="could not poll: KeyError"):
            client.call("poll", ticket=10**9)  # a ticket the server never gave: one line, exit 3, no traceback
        assert pool_client.PoolError("x").exit_code == 3
    finally:
        client.close()


def test_start_refuses_to_replace_a_file_that_is_not_a_socket(cli, tmp_path):
    kept = tmp_path / "parity.toml"
    kept.write_text("frameworks = 'pt'\n")
    r = cli("pool", "start", "--socket", kept)
    assert r.code == 2 and r.err.startswith(f"parity: error: {kept} exists and is not a socket"), r.err
    assert kept.read_text() == "frameworks = 'pt'\n"


def test_a_template_with_threads_does_not_fork(cli, tiny, tmp_path, own_pool):
    """OpenBLAS starts a worker thread when numpy loads unless OPENBLAS_NUM_THREADS=1, which a template sets
    while it imports. A key whose environment asks for two threads gets a template that is not
    single-threaded when it is to fork: it refuses, and the key's workers are new interpreters, said in the
    pool's status and in results.json."""
    env = {SOCKET_ENV: own_pool, "OPENBLAS_NUM_THREADS": "2"}
    r = cli("check", tiny / "bert-pt", "--frameworks", "pt,flax", "--report-dir", tmp_path / "r", env=env)
    assert r.code == 0, r.err
    workers = _served(tmp_path / "r")["workers"]
    assert not any(w["forked"] for w in workers.values()), workers
    assert all("threads when it was to fork" in w["fresh_because"] for w in workers.values()), workers
    status = pool_client.SharedPool(own_pool)
    try:
        refused = status.call("status")["not_forked"]
    finally:
        status.close()
    assert {n["framework"] for n in refused} == {"pt", "flax"}
    assert all(n["why"].startswith("its template had ") for n in refused)
    shown = cli("pool", "status", env={SOCKET_ENV: own_pool})
    assert "new interpreters: its template had" in shown.out
    again = cli("check", tiny / "bert-pt", "--frameworks", "pt,flax", "--report-dir", tmp_path / "r2",
                env={SOCKET_ENV: own_pool})  # the key without the variable: forked, single-threaded
    assert again.code == 0 and all(w["forked"] for w in _served(tmp_path / "r2")["workers"].values())
