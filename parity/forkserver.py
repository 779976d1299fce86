"""Kept workers forked from a template that has already imported their framework (the pool server's).

A template is ``python -m parity.forkserver FD`` started with one worker key's interpreter,
environment and blocked modules (parity.pool). It imports what every worker of its framework
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
import sys
import time
from collections import deque
from pathlib import Path

REPARENT_WAIT_S = 5.0  # how long a forked worker waits to become the server's child before it gives up


def make_subreaper() -> bool:
    """Linux: orphaned descendants of this process become its children (PR_SET_CHILD_SUBREAPER)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def wait_polling(proc, timeout: float | None, what: str, interval: float):
    """Popen.wait for a process this one sees only through ``proc.poll()``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while proc.poll() is None:
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(what, timeout)
        time.sleep(interval)
    return proc.returncode


class Template:
    """The pool's handle on one template process: forks workers on request, in order."""

    def __init__(self, framework: str, python: str, env: dict, blocked: tuple, log: Path):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "parity.forkserver", str(theirs.fileno()), framework, ",".join(blocked)],
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
            if not answer.isdigit():  # this one could not be forked
                proc.failed()
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


class ForkedProc:
    """The part of subprocess.Popen the pool, the server and the executor use, for a forked worker
    (a child of this process, which is a subreaper). Nothing here waits for the template."""

    def __init__(self, template: Template, stdin):
        self.template, self.stdin = template, stdin
        self.pid: int | None = None
        self.returncode: int | None = None
        self.cancelled = False  # killed before its pid came: killed on arrival (Template.read_answers)

    def started(self) -> bool:
        """Whether the pid is known, or the worker will never run (its fork failed, or it was killed)."""
        if self.pid is None and self.returncode is None:
            self.template.read_answers()
        return self.pid is not None or self.returncode is not None

    def failed(self) -> None:
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

    def wait(self, timeout: float | None = None):
        return wait_polling(self, timeout, f"forked worker {self.pid}", 0.01)

    def kill(self) -> None:
        if not self.started():  # not forked yet: it never serves, and is killed when its pid comes
            self.cancelled = True
            self.failed()
        elif self.pid is not None and self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


# ---- the template process -----------------------------------------------------------------------------------

def _warm(framework: str) -> None:
    """What every worker of ``framework`` imports before it loads a model; a failure is left for the
    worker to meet (and report) again, as a fresh worker would."""
    import importlib

    from .runners import registry, runner_class

    fw = registry.get(framework)
    try:
        runner_class(framework)
        for module in fw.requires + fw.warm_imports:
            importlib.import_module(module)
    except Exception:
        pass


def _become_worker(sock: socket.socket, stdin_fd: int, log: str, server: int) -> None:
    """In the forked worker: own session, the pipe as stdin, ``log`` as stdout and stderr, the server
    as parent (and its death as ours); then the serve loop, as ``parity.worker --serve-loop``."""
    from .worker import die_with_parent, serve_loop

    sock.close()
    sys.argv = [sys.modules["parity.worker"].__file__, "--serve-loop"]  # as `python -m parity.worker --serve-loop`
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.close(stdin_fd)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    deadline = time.monotonic() + REPARENT_WAIT_S
    while os.getppid() != server:  # the middle process is about to exit: the subreaper adopts us
        if time.monotonic() > deadline:
            os._exit(1)
        time.sleep(0.001)
    die_with_parent()
    if os.getppid() != server:  # the server died before the death signal was armed
        os._exit(1)
    code = 0
    try:
        serve_loop(os.fdopen(0, "r"))
    except BaseException:  # as an uncaught exception ends a worker process: its traceback in the log
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv=None) -> int:
    import faulthandler

    from .worker import block_imports, die_with_parent

    argv = sys.argv[1:] if argv is None else argv
    fd, framework, blocked = int(argv[0]), argv[1], [b for b in argv[2].split(",") if b]
    server = os.getppid()
    die_with_parent()
    faulthandler.enable()  # as parity.worker's main: a native crash leaves its stack in the worker's log
    block_imports(blocked)
    _warm(framework)
    sock = socket.socket(fileno=fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        except OSError:
            return 0
        if not message:  # the pool closed its end
            return 0
        log = json.loads(message)["log"]
        sys.stdout.flush()  # nothing of the template's output is copied into a worker's log
        sys.stderr.flush()
        pid_in, pid_out = os.pipe()
        middle = os.fork()
        if middle == 0:
            code = 1
            try:
                os.close(pid_in)
                worker = os.fork()
                if worker == 0:
                    os.close(pid_out)
                    _become_worker(sock, fds[0], log, server)
                os.write(pid_out, str(worker).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(pid_out)
        os.close(fds[0])
        worker = os.read(pid_in, 32)
        os.close(pid_in)
        _, status = os.waitpid(middle, 0)
        # Sent once the middle process is gone: the worker is the server's child by then, so its
        # first waitpid already finds it.
        sock.send(worker if worker.isdigit() and os.waitstatus_to_exitcode(status) == 0 else b"fork failed")


if __name__ == "__main__":
    code = main()
    os._exit(code)
