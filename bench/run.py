"""Benchmark `parity check` against the hand-written check it replaces: ``python -m bench.run``.

Per model, after one priming run that fills a conversion cache of its own,
every round runs, one after another so that drift in machine load hits all
legs alike:

  A cold   parity check PATH --format console,json,html --no-cache (a subprocess, as a user runs it)
  B plain  python bench/plain.py PATH (one process, the same work by hand)
  A warm   parity check PATH --format console,json,html with the primed cache (the re-run cost)

Each run gets a fresh report folder; wall time and the peak RSS of the whole
process tree are measured from outside (bench/sampler.py), stages come from
parity's results.json and plain's summary. The Markdown table (medians, A÷B
ratios) is printed and written to bench/results/NAME.md with the raw figures
in NAME.json; bench/results is git-ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import machine, sampler, table

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("minilm", "bertbase")
ORDER = ("cold", "plain", "warm")
HEAVY = ("torch", "tensorflow", "tf_keras", "keras", "jax", "jaxlib", "flax", "transformers")


def env(cache_dir: Path | None = None) -> dict:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    # This checkout's parity, not whatever an editable install elsewhere points to.
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    if cache_dir is not None:
        e["PARITY_CACHE_DIR"] = str(cache_dir)
    return e


def checkpoint(model: str) -> Path:
    """MiniLM from its pip package; bert-base built once per version of its builder into .cache/bench/."""
    if model == "minilm":
        from fixtures import minilm
        return minilm.path()
    key = hashlib.sha256((ROOT / "fixtures" / "bertbase.py").read_bytes()).hexdigest()[:12]
    target = ROOT / ".cache" / "bench" / f"bertbase-{key}"
    if not (target / "DONE").exists():
        print(f"building the bert-base checkpoint into {target} (once)", flush=True)
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "fixtures.bertbase", str(tmp)], cwd=ROOT, env=env(), check=True,
                       stdout=subprocess.DEVNULL)
        (tmp / "DONE").write_text("ok")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def run_leg(model: str, leg: str, ckpt: Path, folder: Path, cache_dir: Path, interval: float) -> dict:
    """One measured run; stages from results.json (parity) or the summary (plain)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if leg == "plain":
        cmd = [sys.executable, str(ROOT / "bench" / "plain.py"), str(ckpt), str(folder / "summary.json")]
    else:
        cmd = [sys.executable, "-m", "parity", "check", str(ckpt), "--format", "console,json,html",
               "--report-dir", str(folder)] + (["--no-cache"] if leg == "cold" else [])
    m = sampler.measure(cmd, env=env(cache_dir), cwd=ROOT, log=folder / "log.txt", interval=interval)
    record = {"model": model, "leg": leg, "dir": str(folder), "cmd": cmd, **m, "stages": {}, "cache": {}}
    try:
        if leg == "plain":
            summary = json.loads((folder / "summary.json").read_text())
            record["stages"] = dict(summary["stages"])
            record["stages"]["outside script"] = m["wall"] - summary["stages"]["total"]
            record["worst_max_abs_diff"] = summary["worst"]
        else:
            results = json.loads((folder / "results.json").read_text())
            for fw, entry in results["frameworks"].items():
                for name, value in (entry.get("seconds") or {}).items():
                    record["stages"][f"{fw}.{name}"] = value
                if entry.get("cache"):
                    record["cache"][fw] = entry["cache"]
            for name in ("prepare", "workers", "compare"):  # the parent's own stages
                if name in results["seconds"]:
                    record["stages"][name] = results["seconds"][name]
            record["stages"]["check"] = results["seconds"]["total"]
            record["stages"]["outside check"] = m["wall"] - results["seconds"]["total"]
            if "cpu" in results["seconds"]:  # CPU-seconds of every process: what 2 cores must fit
                record["stages"]["parent.cpu"] = results["seconds"]["cpu"]
                record["stages"]["all.cpu"] = results["seconds"]["cpu"] + sum(
                    (e.get("seconds") or {}).get("cpu", 0.0) for e in results["frameworks"].values())
            record["passed"] = results["passed"]
    except (OSError, ValueError, KeyError) as e:
        record["error"] = f"{type(e).__name__}: {e}"
    status = "ok" if not record.get("error") and m["returncode"] in (0, 1) else "FAILED"
    print(f"  {model:<9} {leg:<6} {m['wall']:7.1f} s  {m['peak_rss'] / 2 ** 20:7.0f} MiB  exit {m['returncode']}"
          f"  {status}{'  cache ' + str(record['cache']) if record['cache'] else ''}", flush=True)
    if status == "FAILED":
        print(f"  see {folder / 'log.txt'}", flush=True)
    return record


def import_checks() -> dict:
    """`import parity` time, and what `parity --help` imports (it should import no framework)."""
    e = env()

    def wall(cmd, n=3):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=e, cwd=ROOT, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def importtime(cmd):
        err = subprocess.run([sys.executable, "-X", "importtime"] + cmd, env=e, cwd=ROOT, check=True,
                             capture_output=True, text=True).stderr
        rows = [line.split("|") for line in err.splitlines() if line.startswith("import time:") and "|" in line]
        return {row[2].strip(): int(row[1]) for row in rows if row[1].strip().isdigit()}

    loaded = importtime(["-m", "parity", "--help"])
    return {"import_parity_us": importtime(["-c", "import parity"]).get("parity"),
            "import_parity_wall": wall([sys.executable, "-c", "import parity"]),
            "help_wall": wall([sys.executable, "-m", "parity", "--help"]),
            "help_frameworks": sorted({name.split(".")[0] for name in loaded} & set(HEAVY))}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="measured runs per leg (default: 5); the median is reported")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)} (default: both)")
    p.add_argument("--name", default=datetime.now().strftime("%Y%m%d-%H%M%S"),
                   help="results go to OUT/NAME.md, OUT/NAME.json and OUT/NAME/ (default: the date and time)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder (default: bench/results)")
    p.add_argument("--interval", type=float, default=0.05, help="memory sampling interval in seconds (default: 0.05)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.runs < 1 or not args.models or set(args.models) - set(MODELS):
        p.error(f"--runs must be >= 1 and --models a comma list of {', '.join(MODELS)}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    work = out / args.name
    raw = {"name": args.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine.facts(ROOT), "runs": [],
           "config": {"runs": args.runs, "models": args.models, "order": ["prime"] + list(ORDER),
                      "interval": args.interval}}
    raw_path = out / f"{args.name}.json"

    def save():
        out.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps(raw, indent=1))

    raw["imports"] = import_checks()
    save()
    for model in args.models:
        ckpt = checkpoint(model)
        cache_dir = work / "cache" / model
        shutil.rmtree(cache_dir, ignore_errors=True)  # the priming run converts and stores
        print(f"{model}: {ckpt}", flush=True)
        raw["runs"].append(run_leg(model, "prime", ckpt, work / model / "prime", cache_dir, args.interval))
        for i in range(args.runs):
            for leg in ORDER:
                raw["runs"].append(dict(run_leg(model, leg, ckpt, work / model / f"{leg}-{i + 1}", cache_dir,
                                                args.interval), round=i + 1))
                save()
        shutil.rmtree(cache_dir, ignore_errors=True)  # converted weights: hundreds of MB per model and bench
    raw["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    save()
    text = table.render(raw)
    (out / f"{args.name}.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    print(f"wrote {out / (args.name + '.md')} and {raw_path}")
    failed = [r for r in raw["runs"] if r.get("error") or r["returncode"] not in (0, 1)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
