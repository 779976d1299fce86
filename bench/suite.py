"""A suite of six checks against the same checks one by one: ``python -m bench.suite``.

The six checks (issue 19): a tiny BERT token classifier, a tiny GPT-2, a tiny BART
from TF weights only, a tiny ViT from Flax weights only, a tiny BERT base model
(fixtures/matrix.py, fixed seeds), and a drifted BERT (fixtures/build.py's
bert-flax-altered: one layer of its Flax weights shifted, a FAIL). Every round runs,
one after another so that drift in machine load hits all legs alike:

  suite         pytest -n 2 --dist loadgroup over a parity.toml declaring the six (kept workers, parity.execution.pool;
                --xdist N for another -n)
  suite-nopool  the same with --parity-no-pool (a fresh worker per framework and check)
  singles       the six `parity check` runs one after another (the sum is the leg's time)
  plain         bench/plain.py on MiniLM (the hand-written check bench.run compares with): a yardstick for
                how loaded the machine was during the round

Wall time, CPU seconds and the peak RSS of the whole process tree are measured
from outside (bench/sampler.py; CPU from the reaped children's rusage); verdicts are read from each run's results. Medians and
ratios go to bench/results/NAME.md, raw figures to NAME.json (git-ignored).
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

from . import machine, sampler
from .run import ROOT, env

LEGS = ("suite", "suite-nopool", "singles", "plain")


def checkpoints() -> dict[str, Path]:
    """name -> folder for the six checks (built once per version of their builders into .cache/)."""
    tiny = _built("fixtures", ["-m", "fixtures.build"], ["fixtures/build.py"])
    out = _built("bench-suite", ["-m", "bench.suite", "--build"], ["fixtures/matrix.py"], inspect.getsource(build))
    return {"bert-tokens": out / "bert" / "token-classification", "gpt2": out / "gpt2" / "causal-lm",
            "bart-from-tf": out / "bart" / "seq2seq-lm-tf-only",
            "vit-from-flax": out / "vit" / "image-classification-flax-only",
            "bert-base": out / "bert" / "base", "bert-drifted": tiny / "bert-flax-altered"}


def _built(name: str, argv: list, sources: list, code: str = "") -> Path:
    """.cache/<name>/<hash of sources and code>, built by ``python ARGV OUT`` when missing (as tests/conftest.py)."""
    import hashlib
    import subprocess

    h = hashlib.sha256(code.encode())
    for src in sources:
        h.update((ROOT / src).read_bytes())
    target = ROOT / ".cache" / name / h.hexdigest()[:12]
    if not (target / "DONE").exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, *argv, str(tmp)], cwd=ROOT, env=env(), check=True, stdout=subprocess.DEVNULL)
        (tmp / "DONE").write_text("ok")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def build(out: Path) -> None:
    from fixtures import matrix

    cfgs = matrix.configs()
    for mt, task in (("bert", "token-classification"), ("gpt2", "causal-lm"), ("bert", "base")):
        matrix.build_one(cfgs[mt], mt, task, out / mt / task)
    matrix.build_native_only(out, "bart", "seq2seq-lm", "tf")
    matrix.build_native_only(out, "vit", "image-classification", "flax")


TASKS = {"bert-tokens": "token-classification", "gpt2": "causal-lm", "bart-from-tf": "seq2seq-lm",
         "vit-from-flax": "image-classification", "bert-base": "base", "bert-drifted": None}


def declare(folder: Path, ckpts: dict) -> Path:
    lines = ['frameworks = "pt,tf,flax"', "max_length = 12", ""]
    for name, path in ckpts.items():
        lines += ["[[checks]]", f'name = "{name}"', f'checkpoint = "{path}"']
        lines += [f'task = "{TASKS[name]}"'] if TASKS[name] else []
        lines.append("")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "parity.toml").write_text("\n".join(lines))
    return folder


def measure(cmd: list, **kw) -> dict:
    """bench.sampler.measure plus the CPU seconds of the whole process tree (every descendant reaped).

    The pool server an xdist worker starts (parity.execution.pool_server) runs in a session of its own and
    outlives that worker by a moment: as a child subreaper this process inherits it and waits for
    it, so its CPU and its workers' count too."""
    import os
    import resource

    from parity.contracts.procs import make_subreaper

    make_subreaper()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = sampler.measure(cmd, **kw)
    while True:  # orphans of the tree (a pool server ending with its run)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m["cpu"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return m


def suite_leg(suite: Path, out: Path, pool: bool, interval: float, xdist: int = 2) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(xdist), "--dist", "loadgroup",
           str(suite / "parity.toml"), "--parity-report-dir", str(out / "rep"), "--rootdir", str(suite)]
    cmd += [] if pool else ["--parity-no-pool"]
    m = measure(cmd, env=env(out / "cache"), cwd=suite, log=out / "log.txt", interval=interval)
    verdicts = {}
    for res in sorted((out / "rep").glob("*/results.json")):
        verdicts[res.parent.name] = json.loads(res.read_text())["passed"]
    return {**m, "verdicts": verdicts}


def singles_leg(ckpts: dict, out: Path, interval: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    total = {"wall": 0.0, "cpu": 0.0, "peak_rss": 0, "verdicts": {}, "each": {}}
    for name, path in ckpts.items():
        cmd = [sys.executable, "-m", "parity", "check", str(path), "--frameworks", "pt,tf,flax",
               "--max-length", "12", "--report-dir", str(out / name)]
        cmd += ["--task", TASKS[name]] if TASKS[name] else []
        (out / name).mkdir(parents=True)
        m = measure(cmd, env=env(out / "cache"), cwd=ROOT, log=out / name / "log.txt", interval=interval)
        total["wall"] += m["wall"]
        total["cpu"] += m["cpu"]
        total["peak_rss"] = max(total["peak_rss"], m["peak_rss"])
        total["each"][name] = {"wall": m["wall"], "peak_rss": m["peak_rss"], "returncode": m["returncode"]}
        total["verdicts"][name] = json.loads((out / name / "results.json").read_text())["passed"]
    return total


def plain_leg(out: Path, interval: float) -> dict:
    from fixtures import minilm

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, str(ROOT / "bench" / "plain.py"), str(minilm.path()), str(out / "summary.json")]
    return measure(cmd, env=env(), cwd=ROOT, log=out / "log.txt", interval=interval)


def render(raw: dict) -> str:
    by = {leg: [r for r in raw["runs"] if r["leg"] == leg] for leg in LEGS}
    med = {leg: statistics.median(r["wall"] for r in rows) for leg, rows in by.items() if rows}
    rss = {leg: max(r["peak_rss"] for r in rows) / 2**20 for leg, rows in by.items() if rows}
    lines = [f"# bench.suite {raw['name']} ({raw['config']['runs']} rounds)", "",
             "| leg | wall s, median (min-max) | CPU s, median | peak RSS MiB (max) | wall ÷ singles | CPU ÷ singles |",
             "|---|---:|---:|---:|---:|---:|"]
    cpu = {leg: statistics.median(r.get("cpu", 0.0) for r in rows) for leg, rows in by.items() if rows}
    for leg, rows in by.items():
        if rows:
            walls = [r["wall"] for r in rows]
            lines.append(f"| {leg} | {med[leg]:.1f} ({min(walls):.1f}-{max(walls):.1f}) | {cpu[leg]:.1f} | "
                         f"{rss[leg]:.0f} | {med[leg] / med['singles']:.2f}x | "
                         f"{cpu[leg] / cpu['singles'] if cpu['singles'] else 0:.2f}x |")
    each = {name: statistics.median(r["each"][name]["peak_rss"] for r in by["singles"]) / 2**20
            for name in by["singles"][0]["each"]}
    verdicts = {leg: by[leg][0]["verdicts"] for leg in ("suite", "suite-nopool", "singles") if by[leg]}
    lines += ["", "largest single check's peak RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in each.items()),
              "", "verdicts (passed): " + json.dumps(verdicts),
              "same verdicts in every leg: " + str(len({json.dumps(v, sort_keys=True) for v in verdicts.values()}) == 1)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="rounds (default 3); medians are reported")
    p.add_argument("--name", default=datetime.now().strftime("suite-%Y%m%d-%H%M%S"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--xdist", type=int, default=2, help="pytest -n for the suite legs (default 2; 0: one process)")
    p.add_argument("--legs", default=",".join(LEGS), help=f"comma list of {', '.join(LEGS)} (default: all)")
    p.add_argument("--build", metavar="OUT", help=argparse.SUPPRESS)  # the checkpoints, once (checkpoints())
    args = p.parse_args(argv)
    if args.build:
        build(Path(args.build))
        return 0
    out, work = Path(args.out), Path(args.out) / args.name
    ckpts = checkpoints()
    suite = declare(work / "suite", ckpts)
    raw = {"name": args.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine.facts(ROOT), "config": {"runs": args.runs, "legs": LEGS, "xdist": args.xdist,
                                                     "checks": {k: str(v) for k, v in ckpts.items()}}, "runs": []}
    for i in range(args.runs):
        for leg in [leg for leg in LEGS if leg in args.legs.split(",")]:
            folder = work / f"{leg}-{i + 1}"
            if leg.startswith("suite"):
                record = suite_leg(suite, folder, leg == "suite", args.interval, args.xdist)
            elif leg == "singles":
                record = singles_leg(ckpts, folder, args.interval)
            else:
                record = plain_leg(folder, args.interval)
            raw["runs"].append({"leg": leg, "round": i + 1, **record})
            print(f"  {leg:<13} {record['wall']:7.1f} s  {record['peak_rss'] / 2**20:7.0f} MiB", flush=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{args.name}.json").write_text(json.dumps(raw, indent=1, default=str))
    text = render(raw)
    (out / f"{args.name}.md").write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
