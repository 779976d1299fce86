"""A pool server's client: the calls a process makes to borrow workers (``PARITY_POOL_SOCKET``), and
``start`` / ``stop`` / ``for_run`` that manage a server (parity.execution.pool_server) from outside it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from parity.contracts.errors import EXIT_FRAMEWORK, ParityError, UsageError
from parity.contracts.procs import PolledProc
from parity.execution.pool_limits import MAX_CHECKS, MAX_IDLE, MAX_RSS_BYTES, MAX_TEMPLATES, SOCKET_ENV, check_limits

VERSION = 2           # of the calls the server serves; a client and a server must agree (2: workers lent by ticket)
START_WAIT_S = 30.0   # how long `start` waits for a new server to answer
RUN_IDLE_EXIT_S = 60  # a pool shared by one pytest run ends this long after its last client left


@dataclass
class Borrowed:
    """A worker lent by the server: what the executor reads of a pooled worker."""

    proc: "RemoteProc"
    info: dict


class RemoteProc(PolledProc):
    """The part of subprocess.Popen the executor uses, for a worker the server lent under ``ticket``.
    ``pid`` is None until the server knows it (a forked worker whose template is still importing)."""

    def __init__(self, pool: "SharedPool", ticket: int, pid: int | None, info: dict):
        self.pool, self.ticket, self.pid, self.returncode = pool, ticket, pid, None
        self.info = info  # the server's record of the worker (pool.PooledWorker.info), as of the last answer

    def poll(self):
        if self.returncode is None:
            answer = self.pool.call("poll", ticket=self.ticket)
            self.returncode, self.pid = answer["returncode"], answer["pid"] or self.pid
            self.info = answer["info"] or self.info
        return self.returncode

    def kill(self) -> None:
        answer = self.pool.call("kill", ticket=self.ticket)
        self.returncode, self.pid = answer["returncode"], answer["pid"] or self.pid
        self.info = answer["info"] or self.info


class PoolGone(ParityError):
    """The server stopped answering during a check."""


class PoolError(ParityError):
    """The server could not do what a call asked (a worker it could not start, a ticket it does not know)."""

    exit_code = EXIT_FRAMEWORK


class SharedPool:
    """This process's connection to a pool server (pool.Pool's interface for the executor)."""

    def __init__(self, path: str):
        self.path, self.pid = path, os.getpid()
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise UsageError(f"no parity pool answers at {path} ({e.strerror or e})",
                             f"start one with `parity pool start`, or unset {SOCKET_ENV}") from None
        self.reader = self.sock.makefile("rb")
        self.owed = 0  # answers a call cut short by Ctrl-C / SIGTERM left unread
        hello = self.call("hello")
        if hello.get("version") != VERSION:
            raise UsageError(f"the parity pool at {path} speaks version {hello.get('version')}, this parity "
                             f"{VERSION}", "start a pool with this parity's `parity pool start`")
        self.server_pid, self._settings = hello["pid"], hello["settings"]

    def call(self, op: str, **args) -> dict:
        with self.lock:
            try:
                while self.owed:  # so that this call reads its own answer, not an interrupted one's
                    if not self.reader.readline():
                        raise OSError("closed")
                    self.owed -= 1
                self.sock.sendall((json.dumps({"op": op, **args}) + "\n").encode())
                self.owed += 1
                line = self.reader.readline()
                if line:
                    self.owed -= 1
            except OSError:
                line = b""
        if not line:
            if _clients.get(self.path) is self:  # the next check connects again (a restarted server)
                del _clients[self.path]
            raise PoolGone(f"the parity pool at {self.path} stopped answering",
                           f"start it again with `parity pool start`, or unset {SOCKET_ENV}")
        answer = json.loads(line)
        if "error" in answer:
            raise PoolError(f"the parity pool at {self.path} could not {op}: {answer['error']}",
                            "its log is beside the socket (.log); `parity pool stop` and start it again")
        return answer

    def settings(self) -> dict:
        return {**self._settings, "shared": self.path}

    def submit(self, framework: str, request: Path, log: Path, env: dict, python: str | None = None,
               cwd: str | None = None, blocked: tuple = ()) -> Borrowed:
        answer = self.call("submit", framework=framework, request=str(request), log=str(log), env=dict(env),
                           python=python or sys.executable, cwd=cwd or os.getcwd(), blocked=list(blocked))
        return Borrowed(RemoteProc(self, answer["ticket"], answer["pid"], answer["info"]), answer["info"])

    def give_back(self, worker: Borrowed, ok: bool) -> None:
        self.call("give_back", ticket=worker.proc.ticket, ok=bool(ok))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


_clients: dict[str, SharedPool] = {}


def client(path: str) -> SharedPool:
    """This process's connection to the server at ``path``, made at its first check."""
    made = _clients.get(path)
    if made is None or made.pid != os.getpid():  # a fork does not share the parent's connection
        made = _clients[path] = SharedPool(path)
    return made


def answers(path: str) -> bool:
    try:
        probe = SharedPool(path)
    except ParityError:
        return False
    probe.close()
    return True


def start(path: str | None = None, *, max_checks: int = MAX_CHECKS, max_rss_bytes: int = MAX_RSS_BYTES,
          max_idle: int = MAX_IDLE, max_templates: int = MAX_TEMPLATES, watch_pid: int | None = None,
          idle_exit: float | None = None) -> str:
    """Start a server in its own session (it outlives this process) and return its socket once it answers."""
    check_limits(max_checks, max_rss_bytes, max_idle, max_templates)
    path = os.path.abspath(path or str(Path(tempfile.mkdtemp(prefix="parity-pool-")) / "socket"))
    if answers(path):
        raise UsageError(f"a parity pool already answers at {path}",
                         "stop it with `parity pool stop`, or give another --socket")
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # cli.md's --socket DIR/pool.sock: DIR is made
    if len(path.encode()) > 100:
        raise UsageError(f"the socket path {path} is longer than a Unix socket allows (100 bytes)",
                         "give a shorter --socket")
    if os.path.lexists(path):  # a socket left by a server that was killed; never anything else
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UsageError(f"{path} exists and is not a socket", "give --socket a new path")
        os.unlink(path)
    cmd = [sys.executable, "-m", "parity.execution.pool_server", path, "--max-checks", str(max_checks),
           "--max-rss-bytes", str(max_rss_bytes), "--max-idle", str(max_idle), "--max-templates", str(max_templates)]
    cmd += ["--watch-pid", str(watch_pid)] if watch_pid else []
    cmd += ["--idle-exit", str(idle_exit)] if idle_exit is not None else []
    with open(path + ".log", "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + START_WAIT_S
    while not answers(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = Path(path + ".log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"the parity pool did not start at {path}: {tail[0]}",
                             "see the log beside the socket (.log)")
        time.sleep(0.05)
    return path


def stop(path: str, wait: float = 10.0) -> None:
    """Ask the server at ``path`` to stop its workers and end; returns once its socket is gone."""
    pool = SharedPool(path)
    try:
        pool.call("stop")
    finally:
        pool.close()
    deadline = time.monotonic() + wait
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def for_run(run_id: str, watch_pid: int, idle_exit: float | None = RUN_IDLE_EXIT_S, **limits) -> str:
    """The server every process of one test run shares (xdist workers): the first to ask starts it.

    It ends with ``watch_pid`` (the run's controlling process), or ``idle_exit`` seconds after its
    last client left (a run on another machine, whose controller it cannot see)."""
    path = str(Path(tempfile.gettempdir()) / f"parity-pool-{run_id[:24]}.sock")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not answers(path):
            start(path, watch_pid=watch_pid, idle_exit=idle_exit, **limits)
    return path
