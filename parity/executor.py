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


def execute(specs: dict[str, LoadSpec], make_batch: Callable[[], Batch], *, workdir: Path,
            inline: bool = False, device: str = "auto",
            weights_dir: Path | None = None) -> tuple[Batch, dict[str, FrameworkRun]]:
    """Load and run every spec on one batch; with ``weights_dir``, each also exports
    its weights to ``weights_dir/<fw>.npz`` (parity.weights)."""
    if inline:
        batch = make_batch()
        return batch, {fw: _inline(fw, spec, batch, weights_dir) for fw, spec in specs.items()}
    return _in_workers(specs, make_batch, Path(workdir), device, weights_dir)


def save_converted(fw: str, spec: LoadSpec, save_to: Path, *, workdir: Path, inline: bool = False,
                   device: str = "auto") -> FrameworkRun:
    """Load ``spec`` (converted from another framework's weights) and save_pretrained it into ``save_to``."""
    if inline:
        return _inline(fw, spec, None, None, save_to=save_to)
    req = {"framework": fw, "spec": asdict(spec), "batch": None, "save_to": str(save_to),
           "report": str(workdir / f"{fw}.convert.json")}
    req_path = workdir / f"{fw}.convert.request.json"
    req_path.write_text(json.dumps(req))
    log_path = workdir / f"{fw}.convert.log"
    with open(log_path, "wb") as log:
        proc = subprocess.run([sys.executable, "-m", "parity.worker", str(req_path)], stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env(device))
    report_path = Path(req["report"])
    if not report_path.exists():
        last = _last_line(log_path)
        return FrameworkRun(fw, "crashed", error=f"worker died ({_signal_name(proc.returncode)})"
                            + (f"; last output: {last}" if last else ""))
    rep = json.loads(report_path.read_text())
    return FrameworkRun(fw, rep["status"], rep.get("error"), rep.get("load"), rep.get("seconds", {}),
                        traceback=rep.get("traceback"))


def _inline(fw: str, spec: LoadSpec, batch: Batch | None, weights_dir: Path | None,
            save_to: Path | None = None) -> FrameworkRun:
    from .runners import runner_class
    from .worker import error_line

    run = FrameworkRun(fw, "ok")
    t0 = time.perf_counter()
    try:
        runner = runner_class(fw)(spec)
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
        run.outputs = runner.run(batch.arrays)
        run.seconds["run"] = runner.run_seconds
        run.names = list(run.outputs)
    except Exception as exc:
        import traceback
        run.status, run.error, run.traceback = "error", error_line(exc), traceback.format_exc(limit=-8)
    run.seconds["total"] = time.perf_counter() - t0
    return run


def _in_workers(specs, make_batch, workdir: Path, device: str, weights_dir: Path | None = None):
    batch_path = workdir / "batch.npz"
    procs = {}
    env = child_env(device)
    for fw, spec in specs.items():
        req = {"framework": fw, "spec": asdict(spec), "batch": str(batch_path),
               "out": str(workdir / f"{fw}.npz"), "report": str(workdir / f"{fw}.json")}
        if weights_dir is not None:
            req["weights_out"] = str(Path(weights_dir) / f"{fw}.npz")
        req_path = workdir / f"{fw}.request.json"
        req_path.write_text(json.dumps(req))
        log = open(workdir / f"{fw}.log", "wb")
        procs[fw] = (subprocess.Popen([sys.executable, "-m", "parity.worker", str(req_path)],
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env), log)
    try:
        batch = make_batch()
        batch.save(batch_path)
        for proc, _ in procs.values():
            proc.wait()
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
