"""Worker process: ``python -m parity.worker request.json``, or ``--serve-loop`` (parity.execution.pool).

Loads one framework's model while the parent builds the batch, waits for the
batch file, runs it, and writes outputs (npz) and a report (json). A request
may also ask it to save the loaded model (``save_to``: conversion), to export
its weights (``weights_out``, see parity.worker.weights), or to run no batch. Every
failure becomes a report; only a crash leaves none, and the parent says so.
Inline mode runs the same ``serve`` in the parent's process; the request and
report are parity.contracts.protocol's WorkerRequest and WorkerReport.

Test hook: ``PARITY_TEST_FAULT=pt:segfault`` (comma list of
``framework:kind[@load]``, kind one of kill, segfault, oom, hang) makes that
framework's worker fail for real just before it runs the batch (or before it
loads, with ``@load``): SIGKILL to itself, a NULL read through ctypes, an
allocation under a lowered RLIMIT_AS, or a sleep that only --timeout ends.
It exists for tests/test_faults.py; nothing else sets it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Mapping

from parity.contracts.atomic import write_atomic, write_npz_atomic
from parity.contracts.procs import die_with_parent, vm_bytes
from parity.contracts.protocol import WorkerReport, WorkerRequest, f64_path, gen_path
from parity.contracts import registry


def block_imports(names) -> None:
    """Make frameworks this worker does not use unimportable.

    TensorFlow imports jax whenever it is installed (tensorflow.lite.python.util,
    guarded by ImportError), and transformers probes every framework. A None in
    sys.modules makes `import x` raise ImportError and find_spec(x) answer None,
    so both take their "not installed" branch.
    """
    for name in names:
        if name and name not in sys.modules:
            sys.modules[name] = None


def _wait_for(path: Path, timeout: float) -> None:
    parent = os.getppid()
    deadline = time.monotonic() + timeout
    while not path.exists():
        if os.getppid() != parent or time.monotonic() > deadline:
            raise TimeoutError(f"no batch arrived at {path}")
        time.sleep(0.02)


FAULT_ENV = "PARITY_TEST_FAULT"


def fault(framework: str, phase: str) -> None:
    """Apply the test hook (see the module docstring) when it names this framework and phase."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        fw, _, kind = item.strip().rpartition(":")  # the key may carry loading options: pt:bf16:kill
        kind, _, when = kind.partition("@")
        if fw != framework or (when or "run") != phase:
            continue
        if kind == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        elif kind == "segfault":
            import ctypes

            ctypes.string_at(0)  # reads address 0: SIGSEGV
        elif kind == "oom":
            import resource

            import numpy as np

            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (64 << 20), hard))
            np.ones(1 << 30, dtype=np.float64)  # 8 GiB: over the limit, MemoryError
        elif kind == "hang":
            while True:
                time.sleep(60)


def _weights_only_refusal(exc: BaseException | None) -> BaseException | None:
    """torch's weights-only UnpicklingError in ``exc`` or the exceptions it was raised from."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "UnpicklingError" and "Weights only load failed" in str(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def error_line(exc: BaseException) -> str:
    from parity.contracts.errors import ParityError

    if isinstance(exc, ParityError):
        return exc.one_line()
    refused = _weights_only_refusal(exc)
    if refused is not None:
        # torch's message is a screenful with terminal escapes (transformers wraps it in an OSError);
        # the line that matters names the global.
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(refused))
        what = f" (it names {m.group(1)})" if m else ""
        return ParityError(f"torch's weights-only loader refused the pickled weights{what}: the file holds "
                           "objects other than tensors, and unpickling them could run code",
                           f"re-save the weights as {registry.get('pt').native_file} from a source you trust, "
                           "or pass --source with another framework's weights").one_line()
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(text) > 1 and text[0].endswith(":"):  # "Error(s) in loading state_dict for Linear:" says nothing alone
        return f"{type(exc).__name__}: {text[0]} {text[1]}"
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


Stage = Callable[[str, str], None]  # (framework, stage): loading, loaded, running, then the status


def _quiet(framework: str, stage: str) -> None:
    pass


def serve(request: WorkerRequest, *, arrays: Mapping | None = None, stage: Stage = _quiet) -> WorkerReport:
    """Do one request in this process: load, keep (save, export), run, probe; return the report.

    Worker processes and inline mode both come here. ``arrays`` is the batch when it is
    already in memory (inline); otherwise it is read from ``request.batch`` once that file
    arrives, and a request with neither runs no batch (conversion). ``stage(framework,
    stage)`` hears ``loading`` (the runner exists), ``loaded``, ``running`` (the batch is
    in hand) and last the report's status (``done`` when ok). Every failure becomes the
    report's status; only a crash of the process leaves no report.
    """
    from parity.worker.runners import runner_class

    fw = request.framework
    report = WorkerReport(fw)
    t0 = time.perf_counter()
    runner = None
    try:
        runner = runner_class(fw)(request.spec)
        stage(fw, "loading")
        if request.tokenize:  # before any forward pass, and before the model: its own tokenizer
            from parity.worker.tokenize import run as tokenize

            report.tokenizer = tokenize(runner, request.tokenize, error_line)
        loaded = _load(runner, request, report)
        stage(fw, "loaded")
        _keep(runner, request)
        report.load = loaded.to_dict()  # an export may add a note (KerasHub: tensors not followed back)
        if arrays is None and request.batch:
            arrays = _read_batch(request)
        if arrays is not None:
            stage(fw, "running")
            _run(runner, request, arrays, report)
            _behave(runner, request, arrays, report)
    except MemoryError as exc:  # the process cannot go on: a crash, said as such
        report.status = "crashed"
        report.error = f"out of memory ({error_line(exc)})"
    except Exception as exc:  # every failure is reported, never raised past the serve loop
        report.status = "error"
        report.error = error_line(exc)
        report.traceback = traceback.format_exc(limit=-8)
    report.seconds["total"] = time.perf_counter() - t0
    report.compile_cache = getattr(runner, "compile_cache", None)
    stage(fw, "done" if report.status == "ok" else report.status)
    return report


def _load(runner, request: WorkerRequest, report: WorkerReport):
    report.seconds["import"] = runner.import_framework()
    load = runner.load()
    report.load = load.to_dict()
    report.seconds["load"] = load.seconds
    return load


def _keep(runner, request: WorkerRequest) -> None:
    """What a request asks of the loaded model besides its outputs: a saved checkpoint, its weights."""
    if request.save_to:  # conversion: write this framework's checkpoint
        runner.save(request.save_to)
    if request.weights_out:  # weight export for parity.worker.weights.diff_weights
        from parity.contracts.exports import save as save_weights

        save_weights(runner.export_weights(), request.weights_out)


def _read_batch(request: WorkerRequest) -> dict:
    from parity.contracts.batch import load_arrays

    _wait_for(Path(request.batch), request.batch_timeout)
    return load_arrays(Path(request.batch))


def _run(runner, request: WorkerRequest, arrays: Mapping, report: WorkerReport) -> None:
    """The batch, then (``request.explain``) the --explain probes; outputs to ``request.out`` when set."""
    outputs = runner.run(arrays)
    report.seconds["run"] = runner.run_seconds
    report.arrays = outputs
    if request.out:
        write_npz_atomic(request.out, outputs)
    report.outputs = list(outputs)
    if request.explain:
        from parity.worker.probes import explain

        t1 = time.perf_counter()
        report.explain, report.arrays64 = explain(runner, arrays, outputs, request.explain.get("float64", False),
                                                  request.explain.get("probes", True))
        if report.arrays64 is not None and request.out:
            write_npz_atomic(f64_path(request.out), report.arrays64)
        report.seconds["explain"] = time.perf_counter() - t1


def _behave(runner, request: WorkerRequest, arrays: Mapping, report: WorkerReport) -> None:
    """After the forward pass: --generate and --pipeline. A failure there is that part's error in the
    report; the forward outputs still compare."""
    if request.generate:
        from parity.worker.generation import run as generate

        t0 = time.perf_counter()
        try:
            report.gen_arrays, report.generation = generate(runner, arrays, request.generate)
            if request.out:
                write_npz_atomic(gen_path(request.out), report.gen_arrays)
        except Exception as exc:
            report.generation = {"error": error_line(exc)}
        report.seconds["generate"] = time.perf_counter() - t0
    if request.pipeline:
        from parity.worker.pipelines import run as run_pipeline

        t0 = time.perf_counter()
        try:
            report.pipeline = run_pipeline(runner, request.pipeline)
        except Exception as exc:
            report.pipeline = {"error": error_line(exc)}
        report.seconds["pipeline"] = time.perf_counter() - t0


def _process_stage(request: WorkerRequest) -> Stage:
    """A worker process's stages: the test hook (``fault``) and the parent's loaded marker."""
    def stage(fw: str, name: str) -> None:
        if name == "loading":
            fault(fw, "load")
        elif name == "loaded" and request.loaded:  # progress marker for the parent: loading is over
            Path(request.loaded).touch()
        elif name == "running":
            fault(fw, "run")
    return stage


def serve_file(path: Path, cpu_before: float = 0.0) -> WorkerReport:
    """One worker process request: read its file, serve it, write the report file (last, atomically).

    ``cpu_before``: this process's CPU seconds before the request (a pooled worker's earlier checks)."""
    request = WorkerRequest.from_json(Path(path).read_text())
    block_imports(request.block_imports)
    report = serve(request, stage=_process_stage(request))
    report.imported = sorted(fw.main_module for fw in registry.FRAMEWORKS
                             if sys.modules.get(fw.main_module) is not None)
    times = os.times()  # this process, every thread: where the CPU of a side-by-side run went
    report.seconds["cpu"] = round(times.user + times.system - cpu_before, 3)
    write_atomic(request.report, report.to_json())
    return report


def serve_loop(lines) -> None:
    """A pooled worker (parity.execution.pool): one request per line, ``{"request", "log", "cwd", "env"}`` (JSON).

    Each request's output goes to its own log (the parent reads its last line after a crash),
    and ``env`` sets the variables that change from check to check (the run's TMPDIR, the test
    hook). After each report the model is released (the runner's ``release``, a collection);
    imports and compile caches stay. Ends at end of input.
    """
    import gc
    import tempfile

    from parity.worker.runners import runner_class

    for line in lines:
        job = json.loads(line)
        os.environ.update(job.get("env", {}))
        try:  # the submitting process's folder: a request's paths may be relative to it
            os.chdir(job.get("cwd") or ".")
        except OSError:
            pass
        tempfile.tempdir = None  # TMPDIR is read again
        times = os.times()
        with _output_to(job["log"]):
            report = serve_file(Path(job["request"]), cpu_before=times.user + times.system)
            fw, report = report.framework, None
            runner_class(fw).release()
            gc.collect()


@contextmanager
def _output_to(log: str):
    """Point this process's stdout and stderr (file descriptors 1 and 2: native code, faulthandler) at ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for target, fd in zip((1, 2), saved):
            os.dup2(fd, target)
            os.close(fd)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    die_with_parent()
    import faulthandler

    faulthandler.enable()  # a native crash leaves "Fatal Python error: ..." and the Python stack in the log
    if argv[0] == "--serve-loop":
        serve_loop(sys.stdin)
    else:
        serve_file(Path(argv[0]))
    return 0
