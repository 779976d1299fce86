"""The import floor: what importing the frameworks costs, per worker and in one process.

``python -m bench.imports [--runs 5] [--model-type bert]`` times, alternating,
fresh interpreters that import exactly what a worker imports before it reads a
weight (its framework, transformers, and the model type's classes, with the
other frameworks blocked as parity.worker blocks them), and one interpreter
that imports all three as a single-process script does. It prints medians of
wall time and CPU time (user + sys, from the child's rusage) and the floor
that the CPU time sets on a machine with this many cores: one process per
framework cannot finish its imports sooner than their summed CPU time over the
cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from parity.execution.executor import child_env
from parity.contracts.worker_imports import blocked_packages

CLASSES = {"pt": "{}Model", "tf": "TF{}Model", "flax": "Flax{}Model"}
NAMES = {"bert": "Bert", "bart": "Bart", "gpt2": "GPT2", "vit": "ViT", "t5": "T5"}


def script(frameworks: list, name: str, model_type: str | None = None) -> str:
    """Code that imports what a worker for ``frameworks`` imports (scipy blocked where a worker blocks it)."""
    if model_type is None:
        blocked = blocked_packages(set(frameworks))
    else:
        import json
        import tempfile

        from parity.contracts.protocol import LoadSpec

        with tempfile.TemporaryDirectory(prefix="parity-imports-") as folder:
            Path(folder, "config.json").write_text(json.dumps({"model_type": model_type}))
            spec = LoadSpec(path=folder, task="base", class_name=CLASSES[frameworks[0]].format(name), weights="")
            blocked = blocked_packages(set(frameworks), spec)
    lines = ["import sys", f"sys.modules.update(dict.fromkeys({blocked!r}))", "import transformers"]
    lines += [f"transformers.{CLASSES[fw].format(name)}" for fw in frameworks]
    return "\n".join(lines)


def measure(code: str, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model-type", default="bert", choices=sorted(NAMES))
    args = ap.parse_args(argv)
    name = NAMES[args.model_type]
    legs = {"pt": ["pt"], "tf": ["tf"], "flax": ["flax"], "one process": ["pt", "tf", "flax"]}
    samples = {leg: [] for leg in legs}
    for _ in range(args.runs):
        for leg, fws in legs.items():
            env = child_env("cpu", set(fws))
            samples[leg].append(measure(script(fws, name, args.model_type if len(fws) == 1 else None), env))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"imports of {name} classes, medians of {args.runs} fresh interpreters, {cores} cores\n")
    print("| imports | wall s | CPU s |\n|---|---:|---:|")
    med = {leg: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for leg, s in samples.items()}
    for leg, (wall, cpu) in med.items():
        print(f"| {leg} | {wall:.2f} | {cpu:.2f} |")
    per_worker = sum(med[fw][1] for fw in ("pt", "tf", "flax"))
    print(f"\nworkers' imports: {per_worker:.2f} CPU-s, at least {per_worker / cores:.2f} s of wall time on "
          f"{cores} cores; one process: {med['one process'][1]:.2f} CPU-s")


if __name__ == "__main__":
    main()
