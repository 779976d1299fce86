"""One worker pool for several processes: a server keeps the workers, checks elsewhere borrow them.

``parity pool start`` (a CI script's many ``parity check`` commands), the pytest
plugin under xdist (one pool for every xdist worker of a run) and this project's
tests start ``python -m parity.pool_server SOCKET``. A process whose environment
has PARITY_POOL_SOCKET=SOCKET sends each framework request there: the server
hands it to an idle worker of the same key (pool.Pool) or starts one (forked
from the key's template, parity.forkserver), lends it under a ticket at once, and
the client watches and reads that worker as it would its own (the report and
output files; the pid for a kill, once known: a forked worker has none while its
template imports). Only "still running?", "kill it" and "take it back" go over
the socket: one JSON line per call and per answer, on a Unix socket only this
user can open.

The server is one thread: a worker's PR_SET_PDEATHSIG fires when the *thread*
that started it ends, and every call takes milliseconds. A client that goes away
while it holds workers (killed mid-check) has them killed, since they may be
part-way through its request; the server ends on ``stop``, SIGTERM, when the
process it watches ends, or after a while with no client.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EXIT_FRAMEWORK, ParityError, UsageError
from .forkserver import ForkedProc, make_subreaper, wait_polling
from .pool import MAX_CHECKS, MAX_IDLE, MAX_RSS_BYTES, MAX_TEMPLATES, SOCKET_ENV, Pool, PooledWorker, rss_bytes

VERSION = 2           # of the calls below; a client and a server must agree (2: workers lent by ticket)
START_WAIT_S = 30.0   # how long `start` waits for a new server to answer
RUN_IDLE_EXIT_S = 60  # a pool shared by one pytest run ends this long after its last client left


class Server:
    """The pool and the workers lent out, served to clients over ``path``."""

    def __init__(self, path: str, pool: Pool, watch_pid: int | None = None, idle_exit: float | None = None):
        self.path, self.pool, self.watch_pid, self.idle_exit = path, pool, watch_pid, idle_exit
        # ticket -> (client, worker, its submit call): a forked worker's pid follows its template's imports
        self.lent: dict[int, tuple[socket.socket, PooledWorker, dict]] = {}
        self.procs: dict[int, subprocess.Popen] = {}  # ticket -> every worker lent: polled and killed by ticket
        self.tickets = itertools.count(1)
        self.reaped = 0.0  # when _reap_strays last looked
        self.buffers: dict[socket.socket, bytes] = {}
        self.running = True
        self.alone_since = time.monotonic()

    def run(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)  # the socket: this user only
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_mask)
        listener.listen(64)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        try:
            while self.running:
                for key, _ in sel.select(timeout=0.5):
                    if key.fileobj is listener:
                        conn, _ = listener.accept()
                        sel.register(conn, selectors.EVENT_READ)
                        self.buffers[conn] = b""
                    else:
                        self._read(sel, key.fileobj)
                self.pool.tick()
                self._reap_strays()
                self._should_end()
        finally:
            for conn in list(self.buffers):
                self._drop(sel, conn)
            self.pool.close()
            listener.close()
            for leftover in (self.path, self.path + ".lock", self.path + ".log"):  # a clean end leaves nothing
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            if Path(self.path).parent.name.startswith("parity-pool-"):  # the folder `start` made
                try:
                    Path(self.path).parent.rmdir()
                except OSError:
                    pass

    def _should_end(self) -> None:
        if self.watch_pid is not None and not _alive(self.watch_pid):
            self.running = False
        if self.buffers:
            self.alone_since = time.monotonic()
        elif self.idle_exit is not None and time.monotonic() - self.alone_since > self.idle_exit:
            self.running = False

    def _read(self, sel, conn: socket.socket) -> None:
        try:
            data = conn.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._drop(sel, conn)
            return
        self.buffers[conn] += data
        while b"\n" in self.buffers[conn]:
            line, self.buffers[conn] = self.buffers[conn].split(b"\n", 1)
            try:
                answer = self._call(conn, json.loads(line))
            except Exception as e:  # a bad call fails that call, not the server
                answer = {"error": f"{type(e).__name__}: {e}"}
            try:
                conn.sendall((json.dumps(answer) + "\n").encode())
            except OSError:
                self._drop(sel, conn)
                return

    def _call(self, conn, msg: dict) -> dict:
        op = msg["op"]
        if op == "hello":
            return {"version": VERSION, "settings": self.pool.settings(), "pid": os.getpid()}
        if op == "submit":
            worker = self._submit(msg)
            ticket = next(self.tickets)
            self.lent[ticket], self.procs[ticket] = (conn, worker, msg), worker.proc
            return {"ticket": ticket, "pid": worker.proc.pid, "info": worker.info}
        if op in ("poll", "kill"):
            proc = self._proc(msg["ticket"])
            if op == "kill":
                from .executor import _kill

                _kill(proc)  # one not forked yet is killed when its pid comes (ForkedProc.kill)
            lent = self.lent.get(msg["ticket"])
            if lent is not None:
                lent[1].info["pid"] = proc.pid
            return {"returncode": proc.poll(), "pid": proc.pid, "info": lent[1].info if lent else None}
        if op == "give_back":
            _, worker, _ = self.lent.pop(msg["ticket"])
            self.pool.give_back(worker, bool(msg["ok"]))
            self._forget_ended()
            return {}
        if op == "status":
            return self.status()
        if op == "stop":
            self.running = False
            return {}
        raise ValueError(f"unknown call {op!r}")

    def _submit(self, msg: dict) -> PooledWorker:
        return self.pool.submit(msg["framework"], Path(msg["request"]), Path(msg["log"]), msg["env"], msg["python"],
                                msg["cwd"], tuple(msg.get("blocked", ())))

    def _proc(self, ticket: int):
        """The worker of ``ticket``; one whose template could not fork it is replaced by a new interpreter
        that takes the same request (the template's key starts interpreters from then on)."""
        proc = self.procs[ticket]
        if isinstance(proc, ForkedProc) and ticket in self.lent and proc.started() and proc.pid is None:
            conn, worker, msg = self.lent[ticket]
            self.pool.no_more_templates(worker.key, "its template could not fork it")
            worker = self._submit(msg)
            self.lent[ticket], self.procs[ticket] = (conn, worker, msg), worker.proc
            proc = worker.proc
        return proc

    def status(self) -> dict:
        return {"settings": self.pool.settings(), "pid": os.getpid(), "clients": len(self.buffers),
                "started": self.pool.spawned, "forked": self.pool.forked, "lent": len(self.lent),
                "idle": [{"framework": w.key[0], "python": w.key[1], "pid": w.proc.pid, "checks": w.checks,
                          "rss_bytes": rss_bytes(w.proc.pid)} for w in self.pool.idle],
                "templates": [{"framework": k[0], "python": k[1], "pid": t.proc.pid, "rss_bytes": rss_bytes(t.proc.pid)}
                              for k, t in self.pool.templates.items()]}

    def _reap_strays(self) -> None:
        """Orphans this subreaper adopted (a killed worker's own children, a killed template's middle
        process) that have ended: reaped, so that a long-lived server keeps no zombies."""
        if time.monotonic() - self.reaped < 1.0:
            return
        self.reaped = time.monotonic()
        known = {proc.pid for proc in self.procs.values()} | {w.proc.pid for w in self.pool.idle} \
            | {t.proc.pid for t in self.pool.templates.values()}
        try:
            children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
        except OSError:
            return
        for pid in map(int, children):
            if pid not in known and not _alive(pid):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def _forget_ended(self) -> None:
        for ticket in [t for t, proc in self.procs.items() if t not in self.lent and proc.poll() is not None]:
            del self.procs[ticket]

    def _drop(self, sel, conn: socket.socket) -> None:
        """A client left: workers it still held may be part-way through its request; they go."""
        sel.unregister(conn)
        conn.close()
        self.buffers.pop(conn, None)
        for ticket, (holder, worker, _) in list(self.lent.items()):
            if holder is conn:
                del self.lent[ticket]
                self.pool.give_back(worker, False)
                self.pool.why_next[worker.key] = "the process that held the last one ended during its check"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie has ended too
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


# ---- the client side ----------------------------------------------------------------------------------------

@dataclass
class Borrowed:
    """A worker lent by the server: what the executor reads of a pooled worker."""

    proc: "RemoteProc"
    info: dict


class RemoteProc:
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

    def wait(self, timeout: float | None = None):
        return wait_polling(self, timeout, f"pooled worker {self.pid}", 0.02)

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
    from .pool import check_limits

    check_limits(max_checks, max_rss_bytes, max_idle, max_templates)
    path = os.path.abspath(path or str(Path(tempfile.mkdtemp(prefix="parity-pool-")) / "socket"))
    if answers(path):
        raise UsageError(f"a parity pool already answers at {path}",
                         "stop it with `parity pool stop`, or give another --socket")
    if len(path.encode()) > 100:
        raise UsageError(f"the socket path {path} is longer than a Unix socket allows (100 bytes)",
                         "give a shorter --socket")
    if os.path.lexists(path):  # a socket left by a server that was killed; never anything else
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UsageError(f"{path} exists and is not a socket", "give --socket a new path")
        os.unlink(path)
    cmd = [sys.executable, "-m", "parity.pool_server", path, "--max-checks", str(max_checks),
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.pool_server", description=__doc__.split("\n")[0])
    p.add_argument("socket")
    p.add_argument("--max-checks", type=int, default=MAX_CHECKS)
    p.add_argument("--max-rss-bytes", type=int, default=MAX_RSS_BYTES)
    p.add_argument("--max-idle", type=int, default=MAX_IDLE)
    p.add_argument("--max-templates", type=int, default=MAX_TEMPLATES,
                   help="templates that fork workers (parity.forkserver); 0: every worker a new interpreter")
    p.add_argument("--watch-pid", type=int, help="end when this process has ended")
    p.add_argument("--idle-exit", type=float, help="end after this many seconds without a client")
    args = p.parse_args(argv)
    # Forked workers become this process's children once their template's middle process exits.
    templates = args.max_templates if args.max_templates and make_subreaper() else 0
    server = Server(args.socket, Pool(args.max_checks, args.max_rss_bytes, args.max_idle, templates),
                    args.watch_pid, args.idle_exit)

    def end(*_):
        server.running = False

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
