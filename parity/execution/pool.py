"""Framework workers kept between checks: imports paid once per process that runs many checks.

A pooled worker is ``python -m parity.worker --serve-loop`` (worker.serve_loop), or,
in a pool server, the same loop forked from a template that imported its framework
once (forkserver.py): it reads one request per line on stdin and answers as a
one-shot worker does, with report and output files, so the executor watches and reads it the same way.
Workers are keyed by framework, interpreter and environment (the modules a worker
blocks follow from its environment's ``USE_*`` switches and are part of the key
too), so a check that needs another set of frameworks gets a worker of its own.

Isolation stays: each framework still runs in its own process. A worker that
crashed, hung or ran past --timeout is killed by the executor, reported for its
check and replaced at the next; one is retired after ``max_checks`` checks or when
its resident memory is above ``max_rss_bytes`` (both recorded in results.json
``schedule.pool``). Users install a pool for a stretch of checks with
``session()``: the pytest plugin, the matrix. Several processes (xdist workers,
`parity check` commands of a CI script, the project's tests) share one pool kept
by a server (pool_server.py): a process whose environment names it in
``PARITY_POOL_SOCKET`` borrows its workers. At most ``max_idle`` workers wait at
once; beyond that the least recently used one is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from parity.contracts.procs import kill_group, rss_bytes
from parity.execution.forkserver import ForkedProc, Template
from parity.execution.pool_limits import MAX_CHECKS, MAX_IDLE, MAX_RSS_BYTES, SOCKET_ENV, check_limits

PER_REQUEST_ENV = ("TMPDIR", "PARITY_TEST_FAULT")  # sent with each request (the run's workdir, the test hook)
# Never part of a worker's key: they differ between the processes that share a pool, and no framework reads
# them at inference (torch sets TORCHINDUCTOR_CACHE_DIR in a process that imported it: its own default).
VOLATILE_ENV = PER_REQUEST_ENV + (SOCKET_ENV, "PARITY_POOL", "PWD", "OLDPWD", "SHLVL", "_", "TORCHINDUCTOR_CACHE_DIR")
VOLATILE_PREFIXES = ("PYTEST_",)


def worker_key(framework: str, python: str, env: dict) -> tuple:
    """What makes two workers interchangeable: framework, interpreter, and the environment they start with."""
    return (framework, python, tuple(sorted((k, v) for k, v in env.items()
                                            if k not in VOLATILE_ENV and not k.startswith(VOLATILE_PREFIXES))))


@dataclass
class PooledWorker:
    key: tuple
    proc: subprocess.Popen
    checks: int = 0                      # requests sent to this process
    fresh_because: str | None = "first"  # why this process was started (None once reused)
    info: dict = field(default_factory=dict)  # the latest check's: pid, check, fresh_because


class Pool:
    """Idle workers, least recently used first; ``submit`` hands a request to one (reused or fresh),
    ``give_back`` returns it."""

    def __init__(self, max_checks: int = MAX_CHECKS, max_rss_bytes: int = MAX_RSS_BYTES, max_idle: int = MAX_IDLE,
                 max_templates: int = 0):
        """``max_templates`` > 0 only in a subreaper (forkserver.make_subreaper): workers are then forked
        from a template per key, the most recently used ``max_templates`` kept."""
        check_limits(max_checks, max_rss_bytes, max_idle, max_templates)
        self.max_checks, self.max_rss_bytes, self.max_idle = max_checks, max_rss_bytes, max_idle
        self.max_templates = max_templates
        self.dir = Path(tempfile.mkdtemp(prefix="parity-pool-"))
        self.idle: list[PooledWorker] = []
        self.templates: dict[tuple, Template] = {}  # key -> its template, least recently used first
        self.no_template: dict[tuple, str] = {}  # keys whose template failed to fork (why): plain workers
        self.why_next: dict[tuple, str] = {}  # key -> why its next worker is fresh (crashed, recycled ...)
        self.spawned = self.forked = 0

    def settings(self) -> dict:
        return {"max_checks": self.max_checks, "max_rss_bytes": self.max_rss_bytes, "max_idle": self.max_idle,
                "max_templates": self.max_templates}

    def submit(self, framework: str, request: Path, log: Path, env: dict, python: str | None = None,
               cwd: str | None = None, blocked: tuple = ()) -> PooledWorker:
        """Send ``request`` to a worker for (framework, interpreter, environment, modules it blocks); ``log``
        gets its output. The worker serves it in ``cwd`` (the submitting process's: a request's paths may be
        relative). What a worker blocks stays blocked (transformers reads what is importable once), so a
        request that may import scipy never goes to a worker that blocked it."""
        python = python or sys.executable
        key = worker_key(framework, python, env) + (tuple(sorted(blocked)),)
        worker = self._take(key)
        line = json.dumps({"request": str(request), "log": str(log), "cwd": cwd or os.getcwd(),
                           "env": {k: env.get(k, "") for k in PER_REQUEST_ENV}}) + "\n"
        try:
            worker.proc.stdin.write(line)
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):  # died while idle: a fresh one takes the request
            self._retire(worker)
            self.why_next[key] = "died while idle"
            return self.submit(framework, request, log, env, python, cwd, blocked)
        worker.checks += 1
        worker.info = {"pid": worker.proc.pid, "check": worker.checks, "fresh_because": worker.fresh_because,
                       "forked": isinstance(worker.proc, ForkedProc)}
        worker.fresh_because = None
        return worker

    def _take(self, key: tuple) -> PooledWorker:
        at = next((i for i in range(len(self.idle) - 1, -1, -1) if self.idle[i].key == key), None)
        worker = self.idle.pop(at) if at is not None else None
        if worker is not None and worker.proc.poll() is not None:
            self._retire(worker)
            self.why_next[key], worker = "died while idle", None
        if worker is not None and (rss_bytes(worker.proc.pid) or 0) > self.max_rss_bytes:
            self._retire(worker)
            self.why_next[key], worker = f"recycled above {self.max_rss_bytes} bytes resident", None
        return worker or self._spawn(key)

    def _spawn(self, key: tuple) -> PooledWorker:
        framework, python, env, _ = key
        self.spawned += 1
        env = {**dict(env), "TMPDIR": str(self.dir)}
        log = self.dir / f"{framework}-{self.spawned}.log"
        template = self._template(key, env) if self.max_templates and key not in self.no_template else None
        proc = None
        if template is not None:
            try:
                proc = template.fork(log)
                self.forked += 1
            except OSError:  # it died since _template looked
                self.no_more_templates(key, self.why_next.get(key, "first"))
        if proc is None:
            with open(log, "wb") as out:
                proc = subprocess.Popen([python, "-m", "parity.worker", "--serve-loop"], stdin=subprocess.PIPE,
                                        stdout=out, stderr=subprocess.STDOUT, env=env, text=True,
                                        start_new_session=True)
        return PooledWorker(key, proc, fresh_because=self.why_next.pop(key, "first"))

    def _template(self, key: tuple, env: dict) -> Template | None:
        """The key's template (started at its first worker; one that died is started again), most
        recently used last; beyond ``max_templates`` the least recently used idle ones are stopped."""
        template = self.templates.pop(key, None)
        if template is not None and not template.alive():
            template.close()
            template = None
        if template is None:
            framework, python, _, blocked = key
            template = Template(framework, python, env, blocked, self.dir / f"{framework}-template-{self.spawned}.log")
        self.templates[key] = template
        # Beyond max_templates the least recently used goes, but never one still importing for a worker
        # it owes (the pool keeps more for a moment instead).
        spare = [k for k, t in self.templates.items() if not t.pending and k != key]
        for k in spare[:max(0, len(self.templates) - self.max_templates)]:
            self.templates.pop(k).close()
        return template

    def tick(self) -> None:
        """Read the pids templates have sent (a worker killed before its pid came is killed on arrival)."""
        for template in self.templates.values():
            if template.pending:
                template.read_answers()

    def no_more_templates(self, key: tuple, why: str) -> None:
        """A template of ``key`` failed to fork a worker: it goes, and the key's workers are interpreters."""
        self.no_template[key] = why
        self.why_next[key] = why
        template = self.templates.pop(key, None)
        if template is not None:
            template.close()

    def give_back(self, worker: PooledWorker, ok: bool) -> None:
        """After a check: keep the worker for the next, or retire it (``ok`` False: it was killed or crashed)."""
        if not ok or worker.proc.poll() is not None:
            self._retire(worker)
            self.why_next[worker.key] = "crashed or stopped"
        elif worker.checks >= self.max_checks:
            self._retire(worker)
            self.why_next[worker.key] = f"recycled after {worker.checks} checks"
        else:
            self.idle.append(worker)
            while len(self.idle) > self.max_idle:  # the least recently used goes
                oldest = self.idle.pop(0)
                self._retire(oldest)
                self.why_next[oldest.key] = f"stopped when idle: at most {self.max_idle} idle workers are kept"

    def _retire(self, worker: PooledWorker) -> None:

        try:
            worker.proc.stdin.close()
        except OSError:
            pass
        kill_group(worker.proc)

    def close(self) -> None:
        for worker in self.idle:
            self._retire(worker)
        self.idle.clear()
        for template in self.templates.values():
            template.close()
        self.templates.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


_UNSET = object()
_current = _UNSET


def current():
    """The pool checks in this process use now: the one installed with ``use``, else the shared pool
    named by PARITY_POOL_SOCKET (pool_client.py), else None (a fresh worker per framework and check)."""
    if _current is _UNSET:
        if os.environ.get(SOCKET_ENV) and enabled_by_env():
            from parity.execution.pool_client import client

            return client(os.environ[SOCKET_ENV])
        return None
    return _current


@contextmanager
def use(pool: Pool | None):
    """Checks run inside use ``pool`` (None: fresh workers); the pool outlives the block."""
    global _current
    previous, _current = _current, pool
    try:
        yield pool
    finally:
        _current = previous


@contextmanager
def session(max_checks: int = MAX_CHECKS, max_rss_bytes: int = MAX_RSS_BYTES, max_idle: int = MAX_IDLE):
    """Checks run inside share one pool; its workers end with the block."""
    made = Pool(max_checks, max_rss_bytes, max_idle)
    try:
        with use(made):
            yield made
    finally:
        made.close()


def idle_pids() -> list[int]:
    """Pids of the current pool's idle workers (tests, the bench's memory figure)."""
    return [w.proc.pid for w in _current.idle] if isinstance(_current, Pool) else []


def enabled_by_env(default: bool = True) -> bool:
    """PARITY_POOL=0 turns the pool off where a user would otherwise get one (plugin, matrix)."""
    return os.environ.get("PARITY_POOL", "1" if default else "0") not in ("0", "", "off", "false")
