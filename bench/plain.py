"""The baseline parity is measured against: the same check written by hand.

``python bench/plain.py CHECKPOINT OUT.json``: one process loads the PyTorch
weights as PyTorch, TensorFlow (from_pt) and Flax (from_pt) models, runs the
same tokenized batch as `parity check` (parity.planning.batch.DEFAULT_TEXTS, padded,
max_length 64) with hidden states and attentions, takes the max abs
difference of every output against PyTorch with numpy, and writes a JSON
summary with its stage timings. No worker processes, no cache, no masking of
padded positions, no reports beyond the JSON: what a user would write first.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

STAGES: dict = {}


def stage(name: str, since: float) -> float:
    now = time.perf_counter()
    STAGES[name] = now - since
    print(f"{name:<12} {STAGES[name]:8.2f} s", flush=True)
    return now


def flatten(out) -> dict:
    """name -> numpy array for last_hidden_state, pooler_output, hidden_states.i, attentions.i."""
    import numpy as np

    arrays = {}
    for key in ("last_hidden_state", "pooler_output"):
        if getattr(out, key, None) is not None:
            arrays[key] = np.asarray(out[key])
    for key in ("hidden_states", "attentions"):
        for i, value in enumerate(getattr(out, key, None) or ()):
            arrays[f"{key}.{i}"] = np.asarray(value)
    return arrays


def main(path: str, out_json: str) -> None:
    t = T0
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF classes need Keras 2
    import numpy as np
    import tensorflow as tf
    import torch
    from transformers import AutoModel, AutoTokenizer, FlaxAutoModel, TFAutoModel

    from parity.planning.batch import DEFAULT_TEXTS
    t = stage("imports", t)

    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(list(DEFAULT_TEXTS), padding=True, truncation=True, max_length=64, return_tensors="np")
    t = stage("tokenize", t)

    pt_model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    t = stage("load.pt", t)
    tf_model = TFAutoModel.from_pretrained(path, from_pt=True)
    t = stage("load.tf", t)
    flax_model = FlaxAutoModel.from_pretrained(path, from_pt=True)
    t = stage("load.flax", t)

    flags = {"output_hidden_states": True, "output_attentions": True}
    with torch.no_grad():
        outputs = {"pt": flatten(pt_model(**{k: torch.from_numpy(v) for k, v in enc.items()}, **flags))}
    t = stage("run.pt", t)
    outputs["tf"] = flatten(tf_model({k: tf.constant(v) for k, v in enc.items()}, training=False, **flags))
    t = stage("run.tf", t)
    outputs["flax"] = flatten(flax_model(**dict(enc), **flags))
    t = stage("run.flax", t)

    diffs = {fw: {name: float(np.max(np.abs(outputs[fw][name] - ref))) for name, ref in outputs["pt"].items()}
             for fw in ("tf", "flax")}
    t = stage("compare", t)

    summary = {"checkpoint": path, "inputs": {k: list(v.shape) for k, v in enc.items()},
               "max_abs_diff": diffs, "worst": {fw: max(d.values()) for fw, d in diffs.items()},
               "stages": STAGES}
    with open(out_json, "w") as fh:
        json.dump(summary, fh, indent=1)
    stage("report", t)
    STAGES["total"] = time.perf_counter() - T0
    with open(out_json, "w") as fh:  # again, with the report and total times in it
        json.dump(summary, fh, indent=1)
    print(f"worst max abs diff vs pt: {summary['worst']}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python bench/plain.py CHECKPOINT OUT.json")
    main(sys.argv[1], sys.argv[2])
