"""Worker process: ``python -m parity.worker request.json``.

Loads one framework's model while the parent builds the batch, waits for the
batch file, runs it, and writes outputs (npz) and a report (json). Every
failure becomes a report; only a crash leaves none, and the parent says so.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


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


def error_line(exc: BaseException) -> str:
    from .errors import ParityError

    if isinstance(exc, ParityError):
        return exc.one_line()
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
    try:
        runner = runner_class(fw)(LoadSpec(**request["spec"]))
        load = runner.load()
        report["load"] = load.to_dict()
        report["seconds"]["load"] = load.seconds
        _wait_for(Path(request["batch"]), request.get("batch_timeout", 3600))
        arrays = Batch.load_arrays(Path(request["batch"]))
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
    except Exception as exc:  # every failure is reported, never raised past the worker
        report["status"] = "error"
        report["error"] = error_line(exc)
        report["traceback"] = traceback.format_exc(limit=-8)
    report["seconds"]["total"] = time.perf_counter() - t0
    report["imported"] = sorted(m for m in ("torch", "tensorflow", "jax") if sys.modules.get(m) is not None)
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(Path(argv[0]).read_text())
    block_imports(request.get("block_imports", []))
    report = serve(request)
    _write_json(Path(request["report"]), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
