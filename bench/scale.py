"""How `parity check` time and memory grow with batch, sequence length and model size: ``python -m bench.scale``.

One run per point (these are trends, not A/B ratios), each a subprocess as a
user runs it, with hidden states and attentions, JSON and HTML, and no
conversion cache so every point pays the same loads. The texts are long enough
that every row is truncated to --max-length, so the batch really is
batch x length tokens. Points:

  batch    minilm at length 128, batch 8 / 32 / 128
  length   minilm at batch 32, length 32 / 128 / 256 (plus the 128 point above)
  model    bert-base (12 layers, hidden 768, ~420 MiB of weights) at batch 32, length 128, and at
           batch 128, length 128 (a few-hundred-MB checkpoint at a batch that matters)

Wall time and peak RSS of the process tree come from bench/sampler.py; load and
run per framework, and whether the workers ran side by side, from results.json.
Raw figures go to bench/results/scale-NAME.json, the table to scale-NAME.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from . import machine, sampler
from .run import ROOT, checkpoint, env

FRAMEWORKS = ("pt", "tf", "flax")
POINTS = (  # (axis, model, batch, length)
    ("batch", "minilm", 8, 128), ("batch", "minilm", 32, 128), ("batch", "minilm", 128, 128),
    ("length", "minilm", 32, 32), ("length", "minilm", 32, 256),
    ("model", "bertbase", 32, 128), ("model", "bertbase", 128, 128),
)
MIB = 1024 * 1024
# Every row longer than the longest --max-length, so truncation fixes the sequence length.
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog while parity compares three frameworks."] * 40)


def run_point(axis, model, batch, length, work: Path, interval: float) -> dict:
    ckpt = checkpoint(model)
    folder = work / f"{model}-b{batch}-l{length}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    texts = folder / "texts.txt"
    texts.write_text(LONG_TEXT + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "parity", "check", str(ckpt), "--format", "json,html", "--no-cache",
           "--texts-file", str(texts), "--batch-size", str(batch), "--max-length", str(length),
           "--report-dir", str(folder / "report")]
    m = sampler.measure(cmd, env=env(), cwd=ROOT, log=folder / "log.txt", interval=interval)
    point = {"axis": axis, "model": model, "batch": batch, "length": length, "cmd": cmd, **m}
    try:
        results = json.loads((folder / "report" / "results.json").read_text())
        point["shape"] = results["inputs"].get("shapes", {}).get("input_ids")
        point["seconds"] = {fw: results["frameworks"][fw].get("seconds") for fw in FRAMEWORKS
                            if fw in results["frameworks"]}
        point["check"] = results["seconds"].get("total")
        point["compare"] = results["seconds"].get("compare")
        point["parallel"] = (results.get("schedule") or {}).get("parallel")
        point["passed"] = results["passed"]
        point["weights_bytes"] = sum(p.stat().st_size for p in Path(ckpt).glob("*.safetensors"))
    except (OSError, ValueError, KeyError) as e:
        point["error"] = f"{type(e).__name__}: {e}"
    print(f"  {axis:<6} {model:<9} batch {batch:>4} length {length:>4}  {m['wall']:7.1f} s  "
          f"{m['peak_rss'] / MIB:7.0f} MiB  exit {m['returncode']}{'  ' + point['error'] if 'error' in point else ''}",
          flush=True)
    return point


def _stage(point, stage):
    values = [(point.get("seconds") or {}).get(fw, {}).get(stage) for fw in FRAMEWORKS]
    return [v for v in values if v is not None]


def render(raw: dict) -> str:
    m = raw["machine"]
    lines = [f"# parity scale: {raw['name']}", "",
             f"- machine: {m['platform']}, {m['cpus']} CPUs, {m['ram_bytes'] / 1024 ** 3:.1f} GiB RAM; "
             f"parity {m.get('commit') or '(no git)'}; {raw['created']}",
             "- one run per point; pt, tf, flax; hidden states and attentions; json + html; --no-cache",
             "", "| axis | model | batch x length | wall s | peak RSS MiB | load s (pt/tf/flax) | "
                 "run s (pt/tf/flax) | compare s | workers | exit |",
             "|---|---|---|---:|---:|---|---|---:|---|---|"]
    for p in raw["points"]:
        per = lambda stage: "/".join(  # noqa: E731
            f"{(p.get('seconds') or {}).get(fw, {}).get(stage, float('nan')):.1f}" for fw in FRAMEWORKS)
        mode = {True: "parallel", False: "one at a time", None: "–"}[p.get("parallel")]
        compare = "–" if p.get("compare") is None else f"{p['compare']:.1f}"
        lines.append(f"| {p['axis']} | {p['model']} | {p['batch']} x {p['length']} | {p['wall']:.1f} | "
                     f"{p['peak_rss'] / MIB:.0f} | {per('load') if p.get('seconds') else '–'} | "
                     f"{per('run') if p.get('seconds') else '–'} | {compare} | {mode} | {p['returncode']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=datetime.now().strftime("%Y%m%d-%H%M%S"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--axes", default="batch,length,model", help="comma list of batch, length, model")
    args = p.parse_args(argv)
    axes = {a.strip() for a in args.axes.split(",") if a.strip()}
    out = Path(args.out)
    work = out / f"scale-{args.name}"
    raw = {"name": args.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine.facts(ROOT), "points": []}
    for axis, model, batch, length in POINTS:
        if axis in axes:
            raw["points"].append(run_point(axis, model, batch, length, work, args.interval))
            out.mkdir(parents=True, exist_ok=True)
            (out / f"scale-{args.name}.json").write_text(json.dumps(raw, indent=1))
    text = render(raw)
    (out / f"scale-{args.name}.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    return 1 if any(pt["returncode"] not in (0, 1) or pt.get("error") for pt in raw["points"]) else 0


if __name__ == "__main__":
    sys.exit(main())
