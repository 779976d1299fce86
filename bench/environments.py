"""The cost of a cross-environment check: pt,tf in one environment against pt@v5,tf (PyTorch under
transformers 5 in .venv-v5, TF under the pinned 4.57), alternated, medians of wall time and peak
memory of the whole process tree, as ratios.

    python -m bench.environments [--runs 3] [--model minilm]

Results go to bench/results/environments.json; docs/benchmarks.md summarises them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from . import sampler
from .run import ROOT, checkpoint, env

V5 = ROOT / ".venv-v5" / "bin" / "python"
LEGS = {
    "same": ["--frameworks", "pt,tf"],
    "cross": ["--env", f"v5={V5}", "--frameworks", "pt@v5,tf", "--reference", "pt@v5"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--model", default="minilm", choices=["minilm", "bertbase"])
    args = p.parse_args(argv)
    if not V5.exists():
        print(f"bench: {V5} is missing. Note: run `make venv-v5` first", file=sys.stderr)
        return 2
    ckpt = checkpoint(args.model)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    runs = {leg: [] for leg in LEGS}
    for i in range(args.runs + 1):  # the first round warms the caches and is not counted
        for leg, extra in LEGS.items():
            folder = out / "environments" / leg
            cmd = [sys.executable, "-m", "parity", "check", str(ckpt), "--format", "json",
                   "--report-dir", str(folder), *extra]
            m = sampler.measure(cmd, env=env(), cwd=ROOT, log=out / f"environments-{leg}.log")
            results = json.loads((folder / "results.json").read_text())
            m["passed"] = results["passed"]
            print(f"  {leg:<6} run {i}: {m['wall']:6.1f} s  {m['peak_rss'] / 2 ** 20:6.0f} MiB  "
                  f"exit {m['returncode']}{'' if i else '  (warm-up)'}", flush=True)
            if i:
                runs[leg].append(m)
    summary = {leg: {"wall": statistics.median(r["wall"] for r in rs),
                     "peak_rss": statistics.median(r["peak_rss"] for r in rs),
                     "passed": all(r["passed"] for r in rs)} for leg, rs in runs.items()}
    summary["ratio"] = {k: summary["cross"][k] / summary["same"][k] for k in ("wall", "peak_rss")}
    (out / "environments.json").write_text(json.dumps({"model": args.model, "runs": runs, "summary": summary},
                                                      indent=2) + "\n")
    print(f"cross/same: wall {summary['ratio']['wall']:.2f}x "
          f"({summary['cross']['wall']:.1f} s / {summary['same']['wall']:.1f} s), peak memory "
          f"{summary['ratio']['peak_rss']:.2f}x ({summary['cross']['peak_rss'] / 2 ** 20:.0f} MiB / "
          f"{summary['same']['peak_rss'] / 2 ** 20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
