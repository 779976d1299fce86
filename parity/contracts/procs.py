"""Process helpers for both sides (Linux; each degrades to a no-op or None elsewhere): the parent-death
signal, the child subreaper, liveness, resident memory, and the one handle interface and poll loop of
processes that are not this process's own Popen (a forked worker, a worker lent by the pool server)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Get ``sig`` when the parent dies, so no worker outlives a killed `parity`."""
    _prctl(PR_SET_PDEATHSIG, int(sig))


def make_subreaper() -> bool:
    """Orphaned descendants of this process become its children (the pool server's forked workers)."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie has ended too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid``, None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def vm_bytes() -> int:
    """This process's virtual memory size (the fault hook's RLIMIT_AS is set just above it)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def children() -> list[int]:
    """This process's children (orphans a subreaper adopted included)."""
    try:
        return [int(p) for p in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()]
    except OSError:
        return []


def thread_count() -> int:
    """Threads of this process (a process about to fork must have one: another's locks are copied held)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


class ProcHandle(Protocol):
    """The part of subprocess.Popen the executor, the pool and the server use: a fresh worker is a Popen;
    a forked one (execution.forkserver.ForkedProc) and a lent one (execution.pool_client.RemoteProc) are
    PolledProcs, whose ``pid`` may be None until their fork is done."""

    pid: int | None
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class PolledProc:
    """A process this one sees only through ``poll()``: ``wait`` polls it every ``interval`` seconds."""

    pid: int | None = None
    returncode: int | None = None
    interval = 0.02

    def poll(self) -> int | None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"{type(self).__name__} {self.pid}", timeout)
            time.sleep(self.interval)
        return self.returncode


def kill_group(proc: ProcHandle) -> None:
    """SIGKILL a worker's whole process group (anything it started dies with it; every worker leads its own
    session) and wait for it. A handle whose pid is not known yet is killed by its owner (``kill``)."""
    if proc.poll() is None:
        if proc.pid is None:
            proc.kill()
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
    proc.wait()
