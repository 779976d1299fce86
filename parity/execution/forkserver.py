"""Kept workers forked from a template that has already imported their framework (the pool server's).

A template is ``python -m parity.execution.forkserver FD`` started with one worker key's interpreter,
environment and blocked modules (parity.execution.pool). It imports what every worker of its framework
imports first (the descriptor's ``requires`` and ``warm_imports``: torch and
transformers.modeling_utils, ...), touching no device and running no op, then forks one worker
per request: a new process with its own pid, session, stdin pipe and log, which starts
``worker.serve_loop`` where a freshly started worker would be once its imports were done. A
worker that crashes is replaced by another fork (milliseconds) instead of a new interpreter
(3-6 CPU-seconds of imports).

The template forks twice so that the worker's parent is the pool server, a child subreaper
(PR_SET_CHILD_SUBREAPER): the server polls, waits for and kills it as any child of its own, and
the worker gets SIGKILL when the server dies (PR_SET_PDEATHSIG). Requests and answers are
messages on a SOCK_SEQPACKET pair: the log path with the worker's stdin (a pipe's read end,
passed as SCM_RIGHTS), answered by the worker's pid.

Only a process that is a subreaper forks from templates (``make_subreaper``): the pool server.
A pool inside a user's process (the plugin without xdist, the matrix) starts every worker as
``python -m parity.worker --serve-loop``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections import deque
from pathlib import Path

from parity.contracts.procs import PolledProc

REPARENT_WAIT_S = 5.0  # how long a forked worker waits to become the server's child before it gives up


class Template:
    """The pool's handle on one template process: forks workers on request, in order."""

    def __init__(self, framework: str, python: str, env: dict, blocked: tuple, log: Path):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "parity.worker.template", str(theirs.fileno()), framework, ",".join(blocked)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self.sock = ours
        self.sock.setblocking(False)
        self.pending: deque[ForkedProc] = deque()  # asked for, pid not read yet (answers come in order)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, log: Path) -> "ForkedProc":
        """A worker writing to ``log``; its stdin is the returned proc's ``stdin``. The pid follows
        once the template has finished its imports (``ForkedProc.pid`` is None until then).
        OSError: the template could not be asked (it died)."""
        read_end, write_end = os.pipe()
        try:
            socket.send_fds(self.sock, [json.dumps({"log": str(log)}).encode()], [read_end])
        except OSError:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        proc = ForkedProc(self, os.fdopen(write_end, "w"))
        self.pending.append(proc)
        return proc

    def read_answers(self) -> None:
        """Give pending workers the pids the template has sent so far, without waiting. A worker that
        was killed before its pid came (``cancelled``) is killed and reaped on arrival; a template
        that ended leaves every pending worker ended."""
        while self.pending:
            try:
                answer = self.sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                answer = b""
            if not answer:  # the template died: none of the pending workers will exist
                for proc in self.pending:
                    proc.failed()
                self.pending.clear()
                return
            proc = self.pending.popleft()
            if not answer.isdigit():  # this one could not be forked ("fork failed", "threads N")
                proc.failed(answer.decode(errors="replace"))
            elif proc.cancelled:
                os.kill(int(answer), signal.SIGKILL)
                os.waitpid(int(answer), 0)
            else:
                proc.pid = int(answer)

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class ForkedProc(PolledProc):
    """The part of subprocess.Popen the pool, the server and the executor use, for a forked worker
    (a child of this process, which is a subreaper). Nothing here waits for the template."""

    interval = 0.01

    def __init__(self, template: Template, stdin):
        self.template, self.stdin = template, stdin
        self.pid: int | None = None
        self.returncode: int | None = None
        self.why: str | None = None  # the template's answer when it did not fork this one
        self.cancelled = False  # killed before its pid came: killed on arrival (Template.read_answers)

    def started(self) -> bool:
        """Whether the pid is known, or the worker will never run (its fork failed, or it was killed)."""
        if self.pid is None and self.returncode is None:
            self.template.read_answers()
        return self.pid is not None or self.returncode is not None

    def failed(self, why: str = "") -> None:
        self.why = why or self.why
        self.returncode = -int(signal.SIGKILL)
        self.stdin.close()

    def poll(self):
        if self.returncode is None and self.started() and self.pid is not None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not ours after all (no subreaper): it is gone to us
                self.returncode = -int(signal.SIGKILL)
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if not self.started():  # not forked yet: it never serves, and is killed when its pid comes
            self.cancelled = True
            self.failed()
        elif self.pid is not None and self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


