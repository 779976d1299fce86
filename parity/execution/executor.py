"""Run the frameworks: each in its own worker process (default) or inline.

Both go through one serve loop (parity.worker.serve) with one WorkerRequest
per framework (parity.contracts.protocol): a worker process reads it from a file and
writes its WorkerReport to another; inline mode hands it to serve in this
process. Workers start at once and load their models while this process
builds the batch; they pick the batch up from a file. A worker that dies
without a report is recorded as ``crashed`` with its exit signal, and the
others still compare.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from parity.planning.batch import Batch
from parity.contracts.procs import kill_group
from parity.contracts.protocol import WorkerReport, WorkerRequest, f64_path, gen_path
from parity.contracts import registry
from parity.contracts.protocol import LoadSpec

# Set by the CLI so that its own `import transformers` skips every framework; workers must not inherit them.
PARENT_ONLY_ENV = registry.use_env_names() + ("TRANSFORMERS_NO_ADVISORY_WARNINGS",)
# What side-by-side and kept workers start with (see _Workers.start).
KEPT_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


@dataclass
class FrameworkRun:
    framework: str
    status: str                     # ok | error | crashed
    error: str | None = None
    load: dict | None = None
    seconds: dict = field(default_factory=dict)
    names: list = field(default_factory=list)
    outputs: Mapping | None = None  # name -> array (lazy npz in worker mode)
    traceback: str | None = None
    explain: dict | None = None       # probes of --explain (see probes.py)
    imported: list | None = None      # frameworks the worker process imported
    compile_cache: dict | None = None  # Flax: XLA compilation cache hits and misses (see conversion_cache.compile_dir)
    outputs64: Mapping | None = None  # float64 oracle outputs, when this framework ran them
    signal: str | None = None       # SIGKILL, SIGSEGV, ... when the worker died of one
    returncode: int | None = None   # the worker's exit status (negative: killed by a signal)
    timed_out: bool = False
    generation: dict | None = None    # --generate / --pipeline: the worker's report parts (worker._behave)
    pipeline: dict | None = None
    gen_arrays: Mapping | None = None  # --generate: sequences, raw, processed
    tokenizer: dict | None = None     # tokenizer parity: this side's tokenization (parity.worker.tokenize)

    @classmethod
    def from_report(cls, report: WorkerReport, outputs: Mapping | None = None,
                    outputs64: Mapping | None = None) -> FrameworkRun:
        """A served request's run; ``outputs``: the arrays themselves (in memory, or the worker's npz)."""
        return cls(report.framework, report.status, error=report.error, load=report.load,
                   seconds=report.seconds, names=list(report.outputs), outputs=outputs,
                   traceback=report.traceback, explain=report.explain, imported=report.imported,
                   compile_cache=report.compile_cache, outputs64=outputs64, generation=report.generation,
                   pipeline=report.pipeline, gen_arrays=report.gen_arrays, tokenizer=report.tokenizer)


class RunInterrupted(Exception):
    """Ctrl-C during a run: workers are stopped; ``runs`` holds what finished (others ``interrupted``)."""

    def __init__(self, batch: Batch | None, runs: dict):
        super().__init__("interrupted")
        self.batch = batch
        self.runs = runs


def child_env(device: str, needed: set | None = None, workdir: Path | None = None) -> dict:
    """Worker environment: quiet logs, CPU pinning for --device cpu, and no framework it does not use."""
    env = {k: v for k, v in os.environ.items() if k not in PARENT_ONLY_ENV}
    if needed is not None:
        for fw in registry.FRAMEWORKS:
            if fw.key not in needed:
                env.update({var: "0" for var in fw.use_env})
    if workdir is not None:
        # Temp files of a worker (bridge folders, compiler caches) go into the run's workdir, which
        # this process removes even when the worker was killed before its own cleanup.
        env["TMPDIR"] = str(workdir)
    for name, value in registry.worker_env_defaults().items():
        env.setdefault(name, value)
    for fw in registry.FRAMEWORKS:  # a worker's own settings (KERAS_BACKEND): its key is among those it needs
        if needed is not None and fw.key in needed:
            env.update(fw.own_env)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.update(registry.cpu_only_env())
    return env


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


# transformers' import-time banner: never the reason a worker died
_LOG_NOISE = ("classes are deprecated and will be removed in Transformers v5",)


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines()
                 if ln.strip() and not any(n in ln for n in _LOG_NOISE)]
    except OSError:
        return ""
    fatal = [ln for ln in lines if ln.startswith("Fatal Python error")]
    return (fatal or lines or [""])[-1][:300]


Progress = Callable[[str, str], None]  # (framework or pair, state): the CLI shows these on a TTY


def _quiet(subject: str, state: str) -> None:
    pass


def execute(specs: dict[str, LoadSpec], make_batch: Callable[[], Batch], *, workdir: Path,
            inline: bool = False, device: str = "auto", explain: dict | None = None,
            timeout: float | None = None, progress: Progress | None = None,
            weights_dir: Path | None = None, info: dict | None = None,
            pythons: dict | None = None, behaviour: dict | None = None,
            memory: dict | None = None) -> tuple[Batch, dict[str, FrameworkRun]]:
    """Run every spec; ``timeout`` (seconds, workers only) bounds each worker from its start.

    With ``weights_dir``, each framework also exports its weights to ``weights_dir/<fw>.npz``
    (parity.worker.weights). ``info`` (a dict) receives ``schedule``: how many workers ran at once and why.
    ``explain``: {framework: {"float64": bool}} for the frameworks that run the --explain probes;
    ``progress(framework, state)`` hears loading / running / done per framework. ``pythons``:
    {framework: interpreter} for those whose worker runs in another environment (parity.planning.environments).
    ``memory``: {framework: bytes beside its weights} for the schedule (parity.execution.schedule).
    """
    explain = explain or {}
    progress = progress or _quiet
    requests = {fw: replace(_request(fw, spec, explain.get(fw), weights_dir), **(behaviour or {}))
                for fw, spec in specs.items()}  # behaviour: {"generate": ..., "pipeline": ...} for every worker
    for fw, python in (pythons or {}).items():
        if fw in requests:
            requests[fw].python = python
    if inline:
        return _inline(requests, make_batch, progress)
    return _in_workers(requests, make_batch, Path(workdir), device, timeout, progress, info, memory)


def _request(fw: str, spec: LoadSpec, explain: dict | None, weights_dir: Path | None) -> WorkerRequest:
    weights_out = str(Path(weights_dir) / f"{fw}.npz") if weights_dir is not None else None
    return WorkerRequest(fw, spec, explain=explain, weights_out=weights_out)


def _inline(requests: dict[str, WorkerRequest], make_batch, progress: Progress):
    """Every request in this process, one after the other, through the workers' serve loop."""
    batch = make_batch()
    runs = {}
    try:
        for fw, request in requests.items():
            runs[fw] = _serve_here(request, batch.arrays, progress)
    except KeyboardInterrupt:
        raise RunInterrupted(batch, {**runs, **{fw: _interrupted(fw) for fw in requests if fw not in runs}}) \
            from None
    return batch, runs


def _serve_here(request: WorkerRequest, arrays=None, progress: Progress = _quiet) -> FrameworkRun:
    """Serve ``request`` in this process (inline mode): the outputs stay in memory."""
    from parity.worker.serving import serve

    def stage(fw: str, name: str) -> None:
        if name != "loaded":  # a worker's marker file; inline says "running" once the batch is in hand
            progress(fw, name)

    report = serve(request, arrays=arrays, stage=stage)
    return FrameworkRun.from_report(report, report.arrays, report.arrays64)


def _interrupted(fw: str) -> FrameworkRun:
    return FrameworkRun(fw, "interrupted", error="interrupted (Ctrl-C) before this framework finished")


def _worker_command(request: WorkerRequest, path: Path) -> list[str]:
    """Write ``request`` to ``path``; the command line of the worker process that serves it."""
    path.write_text(request.to_json())
    return [request.python or sys.executable, "-m", "parity.worker", str(path)]


def save_converted(fw: str, spec: LoadSpec, save_to: Path, *, workdir: Path, inline: bool = False,
                   device: str = "auto", python: str | None = None, timeout: float | None = None) -> FrameworkRun:
    """Load ``spec`` (converted from another framework's weights) and save_pretrained it into ``save_to``: one
    worker as a check's are (kept or fresh, watched, --timeout), with no batch; its files are ``<fw>.convert.*``."""
    request = WorkerRequest(fw, spec, save_to=str(save_to), python=python)
    if inline:
        return _serve_here(request)
    workers = _Workers({fw: request}, workdir, device, timeout, _quiet, tag=".convert")
    try:
        workers.fill()
        workers.watch()
    finally:
        workers.stop()
        workers.close_logs()
    return workers.collect(fw)


def _in_workers(requests: dict[str, WorkerRequest], make_batch, workdir: Path, device: str,
                timeout: float | None = None, progress: Progress = _quiet, info: dict | None = None,
                memory: dict | None = None):
    """Every request in its own worker process, as many at once as the schedule allows."""
    workers = _Workers(requests, workdir, device, timeout, progress, memory=memory)
    batch = None
    try:
        _bridge(requests, workers.pool, workdir, device, timeout=timeout)
        workers.fill()
        batch = make_batch()  # built while the first workers load
        batch.save(workers.batch_path)
        workers.watch()
        workers.stop()
    except KeyboardInterrupt:
        finished = {fw for fw in workers.procs if workers.done(fw)}
        workers.stop()
        runs = {fw: workers.collect(fw) if fw in finished else _interrupted(fw) for fw in requests}
        raise RunInterrupted(batch, runs) from None
    except BaseException:
        workers.stop()
        raise
    finally:
        workers.close_logs()
        if info is not None:
            info["schedule"] = workers.schedule()
    return batch, {fw: workers.collect(fw) for fw in workers.procs}


def _bridge(requests: dict[str, WorkerRequest], pool, workdir: Path, device: str,
            timeout: float | None = None) -> None:
    """With kept workers, make the TF <-> Flax bridge's PyTorch weights once, in a kept PyTorch worker.

    Bridging in place (runners/bridge.py) needs torch and the source framework in the
    target's worker, so each direction would keep a worker of its own importing all three.
    Here the PyTorch worker that converts from the source (the check's own, when PyTorch
    runs) saves the weights and the targets load them as plain kept workers. The weights
    are the same bytes either way; a bridge that fails or runs past ``timeout`` leaves the
    target bridging in place (where --timeout bounds it as any load).
    """
    if pool is None:
        return
    from parity.contracts.registry import pt_twin

    made: dict = {}
    for request in requests.values():
        spec = request.spec
        if not spec.via or spec.cache_hit or spec.trust_remote_code:
            continue
        key = (spec.converted_from, spec.via, request.python)
        if key not in made:
            folder = workdir / f"bridge-{spec.converted_from}-{len(made)}"
            source = LoadSpec(path=spec.path, task=spec.task, class_name=pt_twin(spec.class_name),
                              weights=spec.weights, converted_from=spec.converted_from, device=device,
                              output_hidden_states=False, output_attentions=False, weights_dtype=spec.weights_dtype)
            # a kept worker: the check's own PyTorch worker, where it has the same key
            run = save_converted(spec.via, source, folder, workdir=workdir, device=device, python=request.python,
                                 timeout=timeout)
            made[key] = str(folder) if run.status == "ok" and (folder / registry.get(spec.via).native_file).is_file() \
                else None
        if made[key]:
            request.spec = replace(spec, bridged=made[key])


class _Workers:
    """The worker processes of one run: started as the schedule allows, watched, stopped, read."""

    def __init__(self, requests: dict[str, WorkerRequest], workdir: Path, device: str, timeout: float | None,
                 progress: Progress, tag: str = "", memory: dict | None = None):
        """``tag`` names a run without a batch (".convert": a conversion saved, parity convert and the bridge),
        whose files ``<fw><tag>.*`` sit beside a check's own in the same ``workdir``."""
        from parity.execution.schedule import plan

        self.requests, self.workdir, self.device, self.timeout, self.progress, self.tag = \
            requests, workdir, device, timeout, progress, tag
        self.batch_path = workdir / "batch.npz"
        self.sched = plan({fw: r.spec for fw, r in requests.items()}, memory)
        self.pending = list(requests)
        self.procs: dict[str, subprocess.Popen] = {}
        self.started, self.ended, self.state = {}, {}, {}
        self.timed_out: set = set()
        self.logs: list = []
        self.t0 = time.monotonic()
        from parity.execution.pool import current

        self.pool, self.pooled, self._pool_info = current(), {}, {}  # pooled: fw -> PooledWorker still held

    def start(self, fw: str) -> None:
        from parity.contracts.worker_imports import blocked_packages, frameworks_needed

        spec = self.requests[fw].spec
        needed = frameworks_needed(fw, spec)
        env = child_env(self.device, needed, self.workdir)
        if self.sched["max_workers"] > 1 or self.pool is not None:
            # Side by side, PyTorch's OpenMP threads spin while they wait and take the CPU the other
            # workers are loading with (MiniLM on 2 cores: pt run 0.9 s -> 0.15 s); same thread
            # count, so the same numbers. A kept worker always waits among other checks' workers, and
            # gets one key whether its check ran it alone or side by side.
            for name, value in KEPT_ENV.items():
                env.setdefault(name, value)
        batch = {} if self.tag else {"batch": str(self.batch_path), "out": str(self.file(fw, ".npz"))}
        request = replace(self.requests[fw], **batch, report=str(self.file(fw, ".json")),
                          block_imports=blocked_packages(needed, spec), loaded=str(self.file(fw, ".loaded")))
        command = _worker_command(request, self.file(fw, ".request.json"))
        # A kept worker for this framework and environment (parity.execution.pool); never for remote code, whose
        # modules a process keeps by name (transformers_modules.<folder>) once imported.
        if self.pool is not None and not spec.trust_remote_code:
            self.pooled[fw] = self.pool.submit(fw, self.file(fw, ".request.json"), self.file(fw, ".log"), env,
                                               request.python, blocked=tuple(request.block_imports))
            self.procs[fw] = self.pooled[fw].proc
            self._pool_info[fw] = dict(self.pooled[fw].info)
        else:
            log = open(self.file(fw, ".log"), "wb")
            self.logs.append(log)
            self.procs[fw] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.started[fw] = time.monotonic()
        self._note_pid(fw)
        self.state[fw] = "loading"  # shown at once: the batch is built before watch() looks again
        self.progress(fw, "loading")

    def file(self, fw: str, suffix: str) -> Path:
        return self.workdir / f"{fw}{self.tag}{suffix}"

    def _note_pid(self, fw: str) -> None:
        """``<fw>.pid`` in the workdir, for tests that kill a worker, once the pid is known (a kept worker's
        follows its template's imports, parity.execution.forkserver); results.json's ``schedule.pool`` takes the
        pool's record of the worker then, once."""
        pid = self.procs[fw].pid
        if pid is not None and not self.file(fw, ".pid").exists():
            self.file(fw, ".pid").write_text(str(pid))
            if fw in self._pool_info:  # a pool server's latest word on the worker (it may have replaced it)
                self._pool_info[fw].update({**(getattr(self.procs[fw], "info", None) or {}), "pid": pid})

    def done(self, fw: str) -> bool:
        # A worker is done once its report exists (written last, atomically); its interpreter
        # teardown (TF, JAX) can take seconds more and is cut short by stop().
        return self.procs[fw].poll() is not None or self.file(fw, ".json").exists()

    def fill(self) -> None:
        """Start pending workers while fewer than the schedule allows are at work. A worker seen done here is
        marked ended now, before any worker it makes room for starts (results.json's schedule says so)."""
        now, running = time.monotonic(), 0
        for fw in self.procs:
            if self.done(fw):
                self.ended.setdefault(fw, now)
            else:
                running += 1
        while self.pending and running < self.sched["max_workers"]:
            self.start(self.pending.pop(0))
            running += 1

    def watch(self) -> None:
        """Until every worker is done: progress, new workers as others finish, --timeout."""
        while True:
            for fw in self.procs:  # loading -> running (the worker's marker file) -> done
                self._show(fw)
            self.fill()
            if not self.pending and all(self.done(fw) for fw in self.procs):
                for fw in self.procs:  # one that finished since _show looked (a kept worker: within 50 ms)
                    self._show(fw)
                return
            now = time.monotonic()
            for fw, proc in self.procs.items():
                if self.timeout and not self.done(fw) and now - self.started[fw] > self.timeout:
                    kill_group(proc)
                    self.timed_out.add(fw)
            time.sleep(0.05)

    def _show(self, fw: str) -> None:
        self._note_pid(fw)
        if self.done(fw):
            now_state = "done" if self.file(fw, ".json").exists() else "crashed"
            self.ended.setdefault(fw, time.monotonic())
        else:
            now_state = "running" if self.file(fw, ".loaded").exists() else "loading"
        if self.state.get(fw) != now_state:
            self.state[fw] = now_state
            self.progress(fw, now_state)

    def stop(self) -> None:
        """Kill every worker still at work; a pooled worker that reported goes back to its pool."""
        for fw, proc in self.procs.items():
            if fw not in self.pooled:
                if fw not in self._pool_info:  # given back already: no longer this run's
                    kill_group(proc)
                continue
            report = self.file(fw, ".json")
            ok = proc.poll() is None and fw not in self.timed_out and report.exists() \
                and WorkerReport.from_json(report.read_text()).status != "crashed"  # out of memory: retired
            self._note_pid(fw)
            if not ok:
                kill_group(proc)
                self._note_pid(fw)  # a kept worker killed before its pid was known gets it (or None) here
            self.pool.give_back(self.pooled.pop(fw), ok)

    def close_logs(self) -> None:
        for log in self.logs:
            log.close()

    def schedule(self) -> dict:
        """The schedule's plan with each worker's start and end, in seconds from the run's start."""
        self.sched["workers"] = {fw: {"started": round(self.started[fw] - self.t0, 3),
                                      "ended": round(self.ended[fw] - self.t0, 3) if fw in self.ended else None}
                                 for fw in self.started}
        if self.pool is not None:
            self.sched["pool"] = {**self.pool.settings(), "workers": self._pool_info}
        return self.sched

    def collect(self, fw: str) -> FrameworkRun:
        """Read one worker's report; a worker that left none crashed (or was stopped)."""
        code = self.procs[fw].returncode
        sig = _signal_name(code) if code is not None and code < 0 else None
        report_path = self.file(fw, ".json")
        timed_out = fw in self.timed_out
        if timed_out or not report_path.exists():
            last = _last_line(self.file(fw, ".log"))
            if timed_out:
                why = f"worker stopped after the --timeout of {self.timeout:g}s ({sig or _signal_name(code)})"
            else:
                why = f"worker died ({_signal_name(code)}{_HINTS.get(sig, '')})"
            return FrameworkRun(fw, "crashed", error=why + (f"; last output: {last}" if last else ""),
                                signal=sig, returncode=code, timed_out=timed_out)
        report = WorkerReport.from_json(report_path.read_text())
        if report.status != "ok" or self.tag:  # a run without a batch has no outputs
            return FrameworkRun.from_report(report)
        out = self.file(fw, ".npz")
        f64 = f64_path(out)
        run = FrameworkRun.from_report(report, np.load(out), np.load(f64) if f64.exists() else None)
        if gen_path(out).exists():
            run.gen_arrays = np.load(gen_path(out))
        return run


_HINTS = {"SIGKILL": ": killed from outside, e.g. by the out-of-memory killer",
          "SIGSEGV": ": segmentation fault in native code", "SIGABRT": ": aborted by native code"}
