"""The benchmark's Markdown: medians per leg, ratios against the plain script, stages, import checks.

Pure functions of the raw JSON (bench/results/<name>.json), so the table can
be rendered again (``python -m bench.table RAW.json``) and tested on fake data.
"""

from __future__ import annotations

import json
import statistics
import sys

LEGS = {"cold": "A parity check, cold (--no-cache)", "warm": "A parity check, warm (conversion cache)",
        "plain": "B plain script"}
MIB = 1024 * 1024


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, digits=2, unit=""):
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def _ratio(a, b):
    return None if a is None or not b else a / b


def summarize(runs: list) -> dict:
    """(model, leg) -> medians of wall, peak RSS and every stage over the measured runs that left results
    (a run without results.json or a summary, e.g. a crash, is only counted as failed)."""
    groups: dict = {}
    for run in runs:
        if run["leg"] in LEGS:
            groups.setdefault((run["model"], run["leg"]), []).append(run)
    out = {}
    for key, every in groups.items():
        group = [r for r in every if not r.get("error")]
        walls = [r["wall"] for r in group]
        stages = dict.fromkeys(name for r in group for name in r.get("stages", {}))
        out[key] = {
            "runs": len(group), "failed": len(every) - len(group),
            "wall": _median(walls), "wall_min": min(walls, default=None), "wall_max": max(walls, default=None),
            "peak_rss": _median([r["peak_rss"] for r in group]),
            "exit": sorted({r["returncode"] for r in every}),
            "stages": {name: _median([r.get("stages", {}).get(name) for r in group]) for name in stages},
            "cache": sorted({f"{fw} {state}" for r in group for fw, state in (r.get("cache") or {}).items()}),
        }
    return out


def header(raw: dict) -> list:
    m = raw["machine"]
    v = ", ".join(f"{k} {val}" for k, val in m["versions"].items() if val)
    ram = f"{m['ram_bytes'] / 1024 ** 3:.1f} GiB RAM" if m.get("ram_bytes") else "RAM unknown"
    load = lambda la: "/".join(f"{x:.2f}" for x in la) if la else "–"  # noqa: E731
    cfg = raw["config"]
    return [
        f"# parity benchmark: {raw['name']}",
        "",
        f"- machine: {m['platform']}, {m.get('processor') or m['machine']}, {m['cpus']} CPUs, {ram}; "
        f"load average (1/5/15 min) {load(m.get('loadavg_start'))} at start, {load(m.get('loadavg_end'))} at end",
        f"- Python {m['python']}; {v}",
        f"- parity {m.get('commit') or '(no git)'}; {raw['created']}",
        f"- {cfg['runs']} measured run(s) per leg, median shown; order per round: {' '.join(cfg['order'])}; "
        f"memory = peak of the summed RSS of the process tree, sampled every {cfg['interval'] * 1000:.0f} ms",
    ]


def render(raw: dict) -> str:
    summary = summarize(raw["runs"])
    lines = header(raw) + ["", "| model | leg | runs | wall s, median (min–max) | peak RSS MiB, median | "
                               "wall ÷ plain | RSS ÷ plain | exit |",
                           "|---|---|---:|---:|---:|---:|---:|---|"]
    models = list(dict.fromkeys(model for model, _ in summary))
    for model in models:
        plain = summary.get((model, "plain"), {})
        for leg, label in LEGS.items():
            s = summary.get((model, leg))
            if not s:
                continue
            rss = None if s["peak_rss"] is None else s["peak_rss"] / MIB
            plain_rss = plain.get("peak_rss") and plain["peak_rss"] / MIB
            runs = f"{s['runs']}" + (f" (+{s['failed']} failed)" if s["failed"] else "")
            lines.append(
                f"| {model} | {label} | {runs} | {_fmt(s['wall'])}"
                + (f" ({_fmt(s['wall_min'])}–{_fmt(s['wall_max'])})" if s["runs"] else "")
                + f" | {_fmt(rss, 0)} | {_fmt(_ratio(s['wall'], plain.get('wall')), 2, '×')}"
                f" | {_fmt(_ratio(rss, plain_rss), 2, '×')} | {','.join(map(str, s['exit']))} |")
    lines += ["", "Stages (median seconds). parity: per framework from results.json (`frameworks.<fw>.seconds`; "
                  "workers run side by side; `import` is the framework, transformers and the model class), "
                  "`check` = `seconds.total`, "
                  "`outside check` = wall − check (interpreter, CLI, reports). plain: its own timings, "
                  "`outside script` = wall − total (interpreter start and exit, e.g. TF/JAX teardown).",
              "", "| model | leg | stage | s |", "|---|---|---|---:|"]
    for model in models:
        for leg, label in LEGS.items():
            s = summary.get((model, leg))
            for name, value in (s or {}).get("stages", {}).items():
                lines.append(f"| {model} | {label} | {name} | {_fmt(value)} |")
            if s and s["cache"]:
                lines.append(f"| {model} | {label} | conversion cache | {', '.join(s['cache'])} |")
    imports = raw.get("imports")
    if imports:
        fws = imports["help_frameworks"]
        lines += ["", "| import check | result |", "|---|---|",
                  f"| `import parity`, -X importtime cumulative | {imports['import_parity_us'] / 1000:.1f} ms |",
                  f"| `python -c \"import parity\"`, wall incl. interpreter start | {imports['import_parity_wall']:.2f} s |",
                  f"| `python -m parity --help`, wall | {imports['help_wall']:.2f} s |",
                  f"| frameworks imported by `--help` | {', '.join(fws) if fws else 'none'} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.table RAW.json")
    with open(sys.argv[1], encoding="utf-8") as fh:
        print(render(json.load(fh)), end="")
