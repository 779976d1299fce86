"""Wall time and peak resident memory of a command's whole process tree.

parity runs each framework in a worker process, so the parent's own RSS (or
its ru_maxrss) misses most of the memory: the tree is sampled instead, every
~50 ms, as the sum of the RSS of the process and all its descendants. Pages
shared between processes (libraries) count once per process, as `top` shows
them. psutil is used when importable (flax pulls it in through orbax);
otherwise Linux /proc is read directly.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

try:
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_tree_rss(root: int) -> int:
    """Sum of RSS bytes of root and its descendants from /proc (parents read from /proc/<pid>/stat)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # Field 4 (ppid) follows the command name, which may contain spaces: split after ")".
            parents[int(name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid and child not in tree)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass  # exited between listing and reading
    return total


def _psutil_tree_rss(root: int) -> int:
    try:
        proc = psutil.Process(root)
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def tree_rss(root: int, use_psutil: bool | None = None) -> int:
    """Current RSS in bytes of root and all its descendants (0 once it is gone)."""
    if use_psutil is None:
        use_psutil = psutil is not None
    return _psutil_tree_rss(root) if use_psutil else _proc_tree_rss(root)


class PeakSampler(threading.Thread):
    """Samples tree_rss(pid) until stop(); .peak is the largest sum seen."""

    def __init__(self, pid: int, interval: float = 0.05, use_psutil: bool | None = None):
        super().__init__(daemon=True)
        self.pid, self.interval, self.use_psutil = pid, interval, use_psutil
        self.peak, self.samples = 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pid, self.use_psutil))
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def measure(cmd: list, *, env=None, cwd=None, log=None, interval: float = 0.05) -> dict:
    """Run cmd to completion; wall seconds, peak tree RSS (bytes), return code."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        sampler = PeakSampler(proc.pid, interval)
        sampler.start()
        returncode = proc.wait()
        wall = time.perf_counter() - t0
        peak = sampler.stop()
    finally:
        if log:
            out.close()
    return {"wall": wall, "peak_rss": peak, "returncode": returncode, "samples": sampler.samples}
