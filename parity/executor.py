"""Run the frameworks: each in its own worker process (default) or inline.

Workers start at once and load their models while this process builds the
batch; they pick the batch up from a file. A worker that dies without a
report is recorded as ``crashed`` with its exit signal, and the others
still compare.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from .inputs import Batch
from .runners import registry
from .runners.base import LoadSpec

# Set by the CLI so that its own `import transformers` skips every framework; workers must not inherit them.
PARENT_ONLY_ENV = registry.use_env_names() + ("TRANSFORMERS_NO_ADVISORY_WARNINGS",)


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
    compile_cache: dict | None = None  # Flax: XLA compilation cache hits and misses (see cache.compile_dir)
    outputs64: Mapping | None = None  # float64 oracle outputs, when this framework ran them
    signal: str | None = None       # SIGKILL, SIGSEGV, ... when the worker died of one
    returncode: int | None = None   # the worker's exit status (negative: killed by a signal)
    timed_out: bool = False


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
            weights_dir: Path | None = None, info: dict | None = None) -> tuple[Batch, dict[str, FrameworkRun]]:
    """Run every spec; ``timeout`` (seconds, workers only) bounds each worker from its start.

    With ``weights_dir``, each framework also exports its weights to ``weights_dir/<fw>.npz``
    (parity.weights). ``info`` (a dict) receives ``schedule``: how many workers ran at once and why.
    ``explain``: {framework: {"float64": bool}} for the frameworks that run the --explain probes;
    ``progress(framework, state)`` hears loading / running / done per framework.
    """
    explain = explain or {}
    progress = progress or _quiet
    if inline:
        batch = make_batch()
        runs = {}
        try:
            for fw, spec in specs.items():
                runs[fw] = _inline(fw, spec, batch, explain.get(fw), progress, weights_dir)
        except KeyboardInterrupt:
            raise RunInterrupted(batch, {**runs, **{fw: _interrupted(fw) for fw in specs if fw not in runs}}) \
                from None
        return batch, runs
    return _in_workers(specs, make_batch, Path(workdir), device, explain, timeout, progress, weights_dir, info)


def _interrupted(fw: str) -> FrameworkRun:
    return FrameworkRun(fw, "interrupted", error="interrupted (Ctrl-C) before this framework finished")


def save_converted(fw: str, spec: LoadSpec, save_to: Path, *, workdir: Path, inline: bool = False,
                   device: str = "auto") -> FrameworkRun:
    """Load ``spec`` (converted from another framework's weights) and save_pretrained it into ``save_to``."""
    if inline:
        return _inline(fw, spec, None, None, save_to=save_to)
    from .runners import blocked_packages, frameworks_needed

    needed = frameworks_needed(fw, spec)
    req = {"framework": fw, "spec": asdict(spec), "batch": None, "save_to": str(save_to),
           "report": str(workdir / f"{fw}.convert.json"), "block_imports": blocked_packages(needed, spec)}
    req_path = workdir / f"{fw}.convert.request.json"
    req_path.write_text(json.dumps(req))
    log_path = workdir / f"{fw}.convert.log"
    with open(log_path, "wb") as log:
        proc = subprocess.run([sys.executable, "-m", "parity.worker", str(req_path)], stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env(device, needed, workdir))
    report_path = Path(req["report"])
    if not report_path.exists():
        last = _last_line(log_path)
        return FrameworkRun(fw, "crashed", error=f"worker died ({_signal_name(proc.returncode)})"
                            + (f"; last output: {last}" if last else ""))
    rep = json.loads(report_path.read_text())
    return FrameworkRun(fw, rep["status"], rep.get("error"), rep.get("load"), rep.get("seconds", {}),
                        traceback=rep.get("traceback"))


def _inline(fw: str, spec: LoadSpec, batch: Batch | None, explain: dict | None, progress: Progress = _quiet,
            weights_dir: Path | None = None, save_to: Path | None = None) -> FrameworkRun:
    from .runners import runner_class
    from .worker import error_line

    run = FrameworkRun(fw, "ok")
    t0 = time.perf_counter()
    try:
        progress(fw, "loading")
        runner = runner_class(fw)(spec)
        run.seconds["import"] = runner.import_framework()
        run.load = runner.load().to_dict()
        run.seconds["load"] = run.load["seconds"]
        if save_to is not None:
            runner.save(str(save_to))
        if weights_dir is not None:
            from .weights import save as save_weights

            save_weights(runner.export_weights(), Path(weights_dir) / f"{fw}.npz")
        if batch is None:
            run.seconds["total"] = time.perf_counter() - t0
            return run
        progress(fw, "running")
        run.outputs = runner.run(batch.arrays)
        run.seconds["run"] = runner.run_seconds
        run.names = list(run.outputs)
        run.compile_cache = getattr(runner, "compile_cache", None)
        if explain is not None:
            from .probes import explain as probe

            run.explain, run.outputs64 = probe(runner, batch.arrays, run.outputs, explain.get("float64", False))
    except Exception as exc:
        import traceback
        run.status, run.error, run.traceback = "error", error_line(exc), traceback.format_exc(limit=-8)
    run.seconds["total"] = time.perf_counter() - t0
    progress(fw, "done" if run.status == "ok" else run.status)
    return run


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the worker's whole process group (anything it started dies with it)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()


def _in_workers(specs, make_batch, workdir: Path, device: str, explain: dict, timeout: float | None = None,
                progress: Progress = _quiet, weights_dir: Path | None = None, info: dict | None = None):
    from .runners import blocked_packages, frameworks_needed
    from .schedule import plan

    batch_path = workdir / "batch.npz"
    procs, started, ended, timed_out = {}, {}, {}, set()
    logs = []
    batch = None
    sched = plan(specs)
    pending = list(specs)
    t0 = time.monotonic()

    def start(fw: str) -> None:
        spec = specs[fw]
        needed = frameworks_needed(fw, spec)
        env = child_env(device, needed, workdir)
        if sched["max_workers"] > 1:
            # Side by side, PyTorch's OpenMP threads spin while they wait and take the CPU the other
            # workers are loading with (MiniLM on 2 cores: pt run 0.9 s -> 0.15 s); same thread
            # count, so the same numbers.
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        req = {"framework": fw, "spec": asdict(spec), "batch": str(batch_path),
               "out": str(workdir / f"{fw}.npz"), "report": str(workdir / f"{fw}.json"),
               "explain": explain.get(fw), "block_imports": blocked_packages(needed, spec),
               "loaded": str(workdir / f"{fw}.loaded")}
        if weights_dir is not None:
            req["weights_out"] = str(Path(weights_dir) / f"{fw}.npz")
        req_path = workdir / f"{fw}.request.json"
        req_path.write_text(json.dumps(req))
        log = open(workdir / f"{fw}.log", "wb")
        logs.append(log)
        procs[fw] = subprocess.Popen([sys.executable, "-m", "parity.worker", str(req_path)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        started[fw] = time.monotonic()
        (workdir / f"{fw}.pid").write_text(str(procs[fw].pid))  # for tests that kill a worker
        state[fw] = "loading"  # shown at once: the batch is built before the loop below looks again
        progress(fw, "loading")

    # A worker is done once its report exists (written last, atomically); its interpreter teardown
    # (TF, JAX) can take seconds more and is cut short below.
    done = lambda fw: procs[fw].poll() is not None or (workdir / f"{fw}.json").exists()  # noqa: E731

    def fill() -> None:
        while pending and sum(not done(fw) for fw in procs) < sched["max_workers"]:
            start(pending.pop(0))

    state = {}
    try:
        fill()
        batch = make_batch()  # built while the first workers load
        batch.save(batch_path)
        while True:
            for fw in procs:  # loading -> running (the worker's marker file) -> done
                if done(fw):
                    now_state = "done" if (workdir / f"{fw}.json").exists() else "crashed"
                    ended.setdefault(fw, time.monotonic())
                else:
                    now_state = "running" if (workdir / f"{fw}.loaded").exists() else "loading"
                if state.get(fw) != now_state:
                    state[fw] = now_state
                    progress(fw, now_state)
            fill()
            if not pending and all(done(fw) for fw in procs):
                break
            now = time.monotonic()
            for fw, proc in procs.items():
                if timeout and not done(fw) and now - started[fw] > timeout:
                    _kill(proc)
                    timed_out.add(fw)
            time.sleep(0.05)
        for proc in procs.values():
            _kill(proc)
    except KeyboardInterrupt:
        finished = {fw for fw, proc in procs.items() if proc.poll() is not None
                    or (workdir / f"{fw}.json").exists()}
        for proc in procs.values():
            _kill(proc)
        runs = {fw: _collect(fw, procs[fw], workdir, timeout, fw in timed_out) if fw in finished
                else _interrupted(fw) for fw in specs}
        raise RunInterrupted(batch, runs) from None
    except BaseException:
        for proc in procs.values():
            _kill(proc)
        raise
    finally:
        for log in logs:
            log.close()
        if info is not None:
            sched["workers"] = {fw: {"started": round(started[fw] - t0, 3),
                                     "ended": round(ended[fw] - t0, 3) if fw in ended else None} for fw in started}
            info["schedule"] = sched
    return batch, {fw: _collect(fw, proc, workdir, timeout, fw in timed_out) for fw, proc in procs.items()}


def _collect(fw: str, proc: subprocess.Popen, workdir: Path, timeout, timed_out: bool) -> FrameworkRun:
    """Read one worker's report; a worker that left none crashed (or was stopped)."""
    code = proc.returncode
    sig = _signal_name(code) if code is not None and code < 0 else None
    report_path = workdir / f"{fw}.json"
    if timed_out or not report_path.exists():
        last = _last_line(workdir / f"{fw}.log")
        if timed_out:
            why = f"worker stopped after the --timeout of {timeout:g}s ({sig or _signal_name(code)})"
        else:
            why = f"worker died ({_signal_name(code)}{_HINTS.get(sig, '')})"
        return FrameworkRun(fw, "crashed", error=why + (f"; last output: {last}" if last else ""),
                            signal=sig, returncode=code, timed_out=timed_out)
    rep = json.loads(report_path.read_text())
    run = FrameworkRun(fw, rep["status"], rep.get("error"), rep.get("load"), rep.get("seconds", {}),
                       rep.get("outputs", []), traceback=rep.get("traceback"))
    run.explain = rep.get("explain")
    run.imported = rep.get("imported")
    run.compile_cache = rep.get("compile_cache")
    if run.status == "ok":
        run.outputs = np.load(workdir / f"{fw}.npz")
        if (workdir / f"{fw}.f64.npz").exists():
            run.outputs64 = np.load(workdir / f"{fw}.f64.npz")
    return run


_HINTS = {"SIGKILL": ": killed from outside, e.g. by the out-of-memory killer",
          "SIGSEGV": ": segmentation fault in native code", "SIGABRT": ": aborted by native code"}
