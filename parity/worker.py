"""Worker process: ``python -m parity.worker request.json``.

Loads one framework's model while the parent builds the batch, waits for the
batch file, runs it, and writes outputs (npz) and a report (json). A request
may also ask it to save the loaded model (``save_to``: conversion), to export
its weights (``weights_out``, see parity.weights), or to run no batch. Every
failure becomes a report; only a crash leaves none, and the parent says so.

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
from pathlib import Path

from .runners import registry


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


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


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
        fw, _, kind = item.strip().partition(":")
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
            resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + (64 << 20), hard))
            np.ones(1 << 30, dtype=np.float64)  # 8 GiB: over the limit, MemoryError
        elif kind == "hang":
            while True:
                time.sleep(60)


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so no worker outlives a killed `parity`."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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
    from .errors import ParityError

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
                           f"re-save the weights as {registry.get('pt').native_file} from a source you trust, or pass "
                           "--source with another framework's weights").one_line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def serve(request: dict) -> dict:
    """Do one request; return the report dict (also used by inline mode's tests)."""
    import numpy as np

    from .inputs import Batch
    from .runners import runner_class
    from .runners.base import LoadSpec

    fw = request["framework"]
    report = {"framework": fw, "status": "ok", "error": None, "load": None, "seconds": {}, "outputs": []}
    t0 = time.perf_counter()
    runner = None
    try:
        runner = runner_class(fw)(LoadSpec(**request["spec"]))
        fault(fw, "load")
        report["seconds"]["import"] = runner.import_framework()
        load = runner.load()
        report["load"] = load.to_dict()
        report["seconds"]["load"] = load.seconds
        if request.get("loaded"):  # progress marker for the parent: loading is over
            Path(request["loaded"]).touch()
        if request.get("save_to"):  # conversion: write this framework's checkpoint
            runner.save(request["save_to"])
        if request.get("weights_out"):  # weight export for parity.weights.compare
            from .weights import save as save_weights

            save_weights(runner.export_weights(), request["weights_out"])
        if not request.get("batch"):
            report["seconds"]["total"] = time.perf_counter() - t0
            return report
        _wait_for(Path(request["batch"]), request.get("batch_timeout", 3600))
        arrays = Batch.load_arrays(Path(request["batch"]))
        fault(fw, "run")
        outputs = runner.run(arrays)
        report["seconds"]["run"] = runner.run_seconds
        out = Path(request["out"])
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez(tmp, **outputs)
        os.replace(tmp, out)
        report["outputs"] = list(outputs)
        if request.get("explain"):
            from .probes import explain

            t1 = time.perf_counter()
            report["explain"], out64 = explain(runner, arrays, outputs, request["explain"].get("float64", False))
            if out64 is not None:
                np.savez(out.with_name(f"{fw}.f64.npz"), **out64)
            report["seconds"]["explain"] = time.perf_counter() - t1
    except MemoryError as exc:  # the process cannot go on: a crash, said as such
        report["status"] = "crashed"
        report["error"] = f"out of memory ({error_line(exc)})"
    except Exception as exc:  # every failure is reported, never raised past the worker
        report["status"] = "error"
        report["error"] = error_line(exc)
        report["traceback"] = traceback.format_exc(limit=-8)
    report["seconds"]["total"] = time.perf_counter() - t0
    report["imported"] = sorted(fw.main_module for fw in registry.FRAMEWORKS
                                if sys.modules.get(fw.main_module) is not None)
    if getattr(runner, "compile_cache", None) is not None:
        report["compile_cache"] = runner.compile_cache
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    die_with_parent()
    import faulthandler

    faulthandler.enable()  # a native crash leaves "Fatal Python error: ..." and the Python stack in the log
    request = json.loads(Path(argv[0]).read_text())
    block_imports(request.get("block_imports", []))
    report = serve(request)
    times = os.times()  # this process, every thread: where the CPU of a side-by-side run went
    report["seconds"]["cpu"] = round(times.user + times.system, 3)
    _write_json(Path(request["report"]), report)
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is written (outputs, then the report, atomically). Interpreter teardown (TF's
    # and JAX's runtimes, torch's thread pools; ~0.8 CPU-s for MiniLM's three workers) would
    # only take CPU from the workers still running.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
