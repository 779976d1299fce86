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
from .runners.base import LoadSpec

# Set by the CLI so that its own `import transformers` skips torch/TF/JAX; workers must not inherit them.
PARENT_ONLY_ENV = ("USE_TORCH", "USE_TF", "USE_FLAX", "USE_JAX", "TRANSFORMERS_NO_ADVISORY_WARNINGS")


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


def child_env(device: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PARENT_ONLY_ENV}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    return env


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


Progress = Callable[[str, str], None]  # (framework or pair, state): the CLI shows these on a TTY


def _quiet(subject: str, state: str) -> None:
    pass


def execute(specs: dict[str, LoadSpec], make_batch: Callable[[], Batch], *, workdir: Path,
            inline: bool = False, device: str = "auto",
            progress: Progress | None = None) -> tuple[Batch, dict[str, FrameworkRun]]:
    progress = progress or _quiet
    if inline:
        batch = make_batch()
        return batch, {fw: _inline(fw, spec, batch, progress) for fw, spec in specs.items()}
    return _in_workers(specs, make_batch, Path(workdir), device, progress)


def _inline(fw: str, spec: LoadSpec, batch: Batch, progress: Progress = _quiet) -> FrameworkRun:
    from .runners import runner_class
    from .worker import error_line

    run = FrameworkRun(fw, "ok")
    t0 = time.perf_counter()
    try:
        progress(fw, "loading")
        runner = runner_class(fw)(spec)
        run.load = runner.load().to_dict()
        run.seconds["load"] = run.load["seconds"]
        progress(fw, "running")
        run.outputs = runner.run(batch.arrays)
        run.seconds["run"] = runner.run_seconds
        run.names = list(run.outputs)
    except Exception as exc:
        import traceback
        run.status, run.error, run.traceback = "error", error_line(exc), traceback.format_exc(limit=-8)
    run.seconds["total"] = time.perf_counter() - t0
    progress(fw, "done" if run.status == "ok" else run.status)
    return run


def _wait_all(procs: dict, workdir: Path, progress: Progress) -> None:
    """Wait for every worker, reporting loading -> running (the worker's marker file) -> done."""
    state = {}
    while True:
        pending = False
        for fw, (proc, _) in procs.items():
            code = proc.poll()
            now = ("done" if code == 0 and (workdir / f"{fw}.json").exists() else "crashed") if code is not None \
                else ("running" if (workdir / f"{fw}.loaded").exists() else "loading")
            pending = pending or code is None
            if state.get(fw) != now:
                state[fw] = now
                progress(fw, now)
        if not pending:
            return
        time.sleep(0.1)


def _in_workers(specs, make_batch, workdir: Path, device: str, progress: Progress = _quiet):
    batch_path = workdir / "batch.npz"
    procs = {}
    env = child_env(device)
    for fw, spec in specs.items():
        req = {"framework": fw, "spec": asdict(spec), "batch": str(batch_path),
               "out": str(workdir / f"{fw}.npz"), "report": str(workdir / f"{fw}.json"),
               "loaded": str(workdir / f"{fw}.loaded")}
        req_path = workdir / f"{fw}.request.json"
        req_path.write_text(json.dumps(req))
        log = open(workdir / f"{fw}.log", "wb")
        procs[fw] = (subprocess.Popen([sys.executable, "-m", "parity.worker", str(req_path)],
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env), log)
    try:
        batch = make_batch()
        batch.save(batch_path)
        _wait_all(procs, workdir, progress)
    except BaseException:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc, _ in procs.values():
            proc.wait()
        raise
    finally:
        for _, log in procs.values():
            log.close()
    runs = {}
    for fw, (proc, _) in procs.items():
        report_path = workdir / f"{fw}.json"
        if not report_path.exists():
            last = _last_line(workdir / f"{fw}.log")
            runs[fw] = FrameworkRun(fw, "crashed", error=f"worker died ({_signal_name(proc.returncode)})"
                                    + (f"; last output: {last}" if last else ""))
            continue
        rep = json.loads(report_path.read_text())
        run = FrameworkRun(fw, rep["status"], rep.get("error"), rep.get("load"), rep.get("seconds", {}),
                           rep.get("outputs", []), traceback=rep.get("traceback"))
        if run.status == "ok":
            run.outputs = np.load(workdir / f"{fw}.npz")
        runs[fw] = run
    return batch, runs
