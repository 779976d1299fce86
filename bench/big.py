"""Random-weight checkpoints of real model shapes from fixed seeds, and a measured `parity check` on them.

  python -m bench.big build llama-1.1b            # -> .cache/big/llama-1.1b (never committed)
  python -m bench.big check llama-1.1b -- --frameworks pt,flax --batch-size 2 --max-length 32 [--explain]

``check`` runs the CLI as a user does (its own conversion cache folder, empty unless --warm), samples the
process tree's peak RSS (bench/sampler.py) and prints one JSON line: wall seconds, peak, exit code, each
framework's load and run, the schedule, the verdict and, where a float64 run was made, the largest
RMSE ratio candidate / reference per pair. Wrap it in ``flock /tmp/parity-heavy.lock``: a 1.1B float32
Llama is 4.4 GB on disk and several times that in memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from . import sampler
from .run import ROOT, env

BIG = ROOT / ".cache" / "big"
# (class, config): TinyLlama's shape at 1.1B; BERT-base and BERT-large; Llama shapes of the same sizes.
SHAPES = {
    "llama-1.1b": ("LlamaForCausalLM", dict(hidden_size=2048, num_hidden_layers=22, intermediate_size=5632,
                                            num_attention_heads=32, num_key_value_heads=4, vocab_size=32000)),
    "llama-350m": ("LlamaForCausalLM", dict(hidden_size=1024, num_hidden_layers=24, intermediate_size=2816,
                                            num_attention_heads=16, num_key_value_heads=4, vocab_size=32000)),
    "llama-110m": ("LlamaForCausalLM", dict(hidden_size=768, num_hidden_layers=12, intermediate_size=2048,
                                            num_attention_heads=12, num_key_value_heads=4, vocab_size=32000)),
    "bert-110m": ("BertForMaskedLM", dict(hidden_size=768, num_hidden_layers=12, intermediate_size=3072,
                                          num_attention_heads=12, vocab_size=30522)),
    "bert-350m": ("BertForMaskedLM", dict(hidden_size=1024, num_hidden_layers=24, intermediate_size=4096,
                                          num_attention_heads=16, vocab_size=30522)),
}
SEED = 0


def build(name: str) -> Path:
    """The checkpoint, random weights from SEED, float32 safetensors; built once."""
    import torch
    import transformers

    folder = BIG / name
    if (folder / "DONE").exists():
        return folder
    cls_name, shape = SHAPES[name]
    model_type = "llama" if cls_name.startswith("Llama") else "bert"
    config = transformers.AutoConfig.for_model(model_type, **shape)
    torch.manual_seed(SEED)
    model = getattr(transformers, cls_name)(config).eval()
    tmp = folder.with_name(name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    (tmp / "DONE").write_text(f"seed {SEED}\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def check(name: str, args: list, warm: bool = False) -> dict:
    folder = BIG / name
    work = BIG / "runs" / (name + "".join(a.strip("-").replace(" ", "") for a in args if a.startswith("--e") or a in ("oracle",)))
    cache = BIG / "conversions"
    if not warm:
        shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = [sys.executable, "-m", "parity", "check", str(folder), "--report-dir", str(work / "report"),
           "--format", "console,json", *args]
    m = sampler.measure(cmd, env=env(cache), cwd=ROOT, log=work / "log.txt", interval=0.1)
    point = {"model": name, "args": args, "warm": warm, "wall": round(m["wall"], 1),
             "peak_gib": round(m["peak_rss"] / 2**30, 2), "exit": m["returncode"]}
    res_path = work / "report" / "results.json"
    if res_path.exists():
        res = json.loads(res_path.read_text())
        point["frameworks"] = {fw: {k: round(v, 1) for k, v in (e.get("seconds") or {}).items()
                                    if k in ("load", "run", "explain")} for fw, e in res["frameworks"].items()}
        point["schedule"] = (res.get("schedule") or {}).get("reason")
        point["pairs"] = [_pair(c) for c in res["comparisons"]]
    else:
        point["log_tail"] = (work / "log.txt").read_text()[-600:]
    return point


def _pair(comp: dict) -> dict:
    rows = comp["outputs"]
    judged = [r for r in rows if r.get("oracle")]
    worst = max(judged, key=lambda r: r["oracle"]["candidate_rmse"] / max(r["oracle"]["reference_rmse"], 1e-30),
                default=None)
    logits = next((r for r in rows if r["name"] == "logits"), {})
    return {"pair": f"{comp['reference']} vs {comp['candidate']}", "passed": comp["passed"],
            "first_divergence": comp["first_divergence"],
            "failing": [r["name"] for r in rows if not (r.get("gate") or {}).get("elementwise_passed", r["passed"])],
            "logits": {k: logits.get(k) for k in ("max_abs_diff", "mismatched", "total", "cosine", "oracle")},
            "worst_oracle": worst and {"name": worst["name"], **worst["oracle"]}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.big")
    p.add_argument("action", choices=["build", "check"])
    p.add_argument("name", choices=sorted(SHAPES))
    p.add_argument("--warm", action="store_true", help="keep the conversion cache of the previous check")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="after --: parity check's options")
    a = p.parse_args(argv)
    if a.action == "build":
        print(build(a.name))
        return 0
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    print(json.dumps(check(a.name, rest, a.warm)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
