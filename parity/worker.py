"""Worker process: ``python -m parity.worker request.json``.

Loads one framework's model while the parent builds the batch, waits for the
batch file, runs it, and writes outputs (npz) and a report (json). A request
may also ask it to save the loaded model (``save_to``: conversion), to export
its weights (``weights_out``, see parity.weights), or to run no batch. Every
failure becomes a report; only a crash leaves none, and the parent says so.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


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
        outputs = runner.run(arrays)
        report["seconds"]["run"] = runner.run_seconds
        out = Path(request["out"])
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez(tmp, **outputs)
        os.replace(tmp, out)
        report["outputs"] = list(outputs)
    except Exception as exc:  # every failure is reported, never raised past the worker
        report["status"] = "error"
        report["error"] = error_line(exc)
        report["traceback"] = traceback.format_exc(limit=-8)
    report["seconds"]["total"] = time.perf_counter() - t0
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(Path(argv[0]).read_text())
    report = serve(request)
    _write_json(Path(request["report"]), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
