"""One worker pool for several processes: a server keeps the workers, checks elsewhere borrow them.

``parity pool start`` (a CI script's many ``parity check`` commands), the pytest
plugin under xdist (one pool for every xdist worker of a run) and this project's
tests start ``python -m parity.execution.pool_server SOCKET``. A process whose environment
has PARITY_POOL_SOCKET=SOCKET sends each framework request there: the server
hands it to an idle worker of the same key (pool.Pool) or starts one (forked
from the key's template, parity.execution.forkserver), lends it under a ticket at once, and
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
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from parity.contracts.procs import alive, children, kill_group, make_subreaper, rss_bytes
from parity.execution.forkserver import ForkedProc
from parity.execution.pool_client import VERSION
from parity.execution.pool import Pool, PooledWorker
from parity.execution.pool_limits import MAX_CHECKS, MAX_IDLE, MAX_RSS_BYTES, MAX_TEMPLATES



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
        if self.watch_pid is not None and not alive(self.watch_pid):
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
                kill_group(proc)  # one not forked yet is killed when its pid comes (ForkedProc.kill)
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
            self.pool.no_more_templates(worker.key, _fork_refusal(proc.why))
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
                              for k, t in self.pool.templates.items()],
                "not_forked": [{"framework": k[0], "python": k[1], "why": why} for k, why in self.pool.no_template.items()]}

    def _reap_strays(self) -> None:
        """Orphans this subreaper adopted (a killed worker's own children, a killed template's middle
        process) that have ended: reaped, so that a long-lived server keeps no zombies."""
        if time.monotonic() - self.reaped < 1.0:
            return
        self.reaped = time.monotonic()
        known = {proc.pid for proc in self.procs.values()} | {w.proc.pid for w in self.pool.idle} \
            | {t.proc.pid for t in self.pool.templates.values()}
        for pid in children():
            if pid not in known and not alive(pid):
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


def _fork_refusal(answer: str | None) -> str:
    """Why a key's workers are new interpreters from now on, from its template's answer."""
    if answer and answer.startswith("threads "):
        return (f"its template had {answer.split()[1]} threads when it was to fork (a fork copies their locks as "
                "they are held), so it forks no more")
    return "its template could not fork it"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.execution.pool_server", description=__doc__.split("\n")[0])
    p.add_argument("socket")
    p.add_argument("--max-checks", type=int, default=MAX_CHECKS)
    p.add_argument("--max-rss-bytes", type=int, default=MAX_RSS_BYTES)
    p.add_argument("--max-idle", type=int, default=MAX_IDLE)
    p.add_argument("--max-templates", type=int, default=MAX_TEMPLATES,
                   help="templates that fork workers (parity.execution.forkserver); 0: every worker a new interpreter")
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
