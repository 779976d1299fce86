"""``--generate``: what every framework's ``model.generate`` is asked, and how a worker runs it.

Each framework generates from the same prompts (the check's batch: decoder-only
prompts moved to left padding, as generation needs; encoder-decoder models get
the encoder inputs) with its loaded model's own generation config plus the
settings parity fixes for all: greedy unless --num-beams, ``max_new_tokens``.

Per step, two score tensors (steps, rows, vocab) come back:
- ``raw``: the next-token logits of a forward pass over the framework's own
  generated sequence (teacher forcing). Flax's generate returns sequences only
  (FlaxGreedySearchOutput has no scores) and TF's no raw logits, so the same
  forward pass in every framework is the one like-for-like measure; on the
  steps before two sequences part, both see identical tokens.
- ``processed``: the scores generate itself returned after its logits
  processors (``output_scores``): PyTorch and TF; Flax has none.

Numpy only at import: the parent validates with it; runner code imports frameworks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# generate's own bookkeeping, never a behaviour setting
_BOOKKEEPING = {"transformers_version", "_from_model_config", "return_dict_in_generate", "output_scores",
                "output_logits"}


def prompts(arrays: dict, task: str) -> dict:
    """The generation inputs from the check's batch: encoder inputs for encoder-decoder models; for
    decoder-only models input_ids and attention_mask with each row's padding moved to the left."""
    if task != "causal-lm":
        return {k: v for k, v in arrays.items() if not k.startswith("decoder_")}
    ids = np.asarray(arrays["input_ids"])
    mask = np.asarray(arrays.get("attention_mask", np.ones_like(ids)))
    out_ids, out_mask = np.zeros_like(ids), np.zeros_like(mask)
    for r in range(ids.shape[0]):
        real = mask[r].astype(bool)
        n = int(real.sum())
        pad = ids[r][~real][:1]
        out_ids[r, :ids.shape[1] - n] = pad[0] if pad.size else 0
        out_ids[r, ids.shape[1] - n:] = ids[r][real]
        out_mask[r, ids.shape[1] - n:] = 1
    return {"input_ids": out_ids, "attention_mask": out_mask}


def teacher_forced(prompt: dict, sequences: np.ndarray, task: str, steps: int, takes_positions: bool) -> tuple:
    """(forward inputs, slice of the logits' token axis) whose logits are the next-token logits of every step.

    Decoder-only: the prompt and the generated tokens but the last, positions counted from each row's
    first real token (as generate counts them under left padding); encoder-decoder: the encoder inputs
    and the generated decoder ids but the last."""
    if task == "causal-lm":
        p = prompt["input_ids"].shape[1]
        ids = sequences[:, :p + steps - 1]
        mask = np.concatenate([prompt["attention_mask"], np.ones((ids.shape[0], steps - 1), ids.dtype)], axis=1)
        inputs = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        if takes_positions:
            inputs["position_ids"] = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int64)
        return inputs, slice(p - 1, p - 1 + steps)
    dec = sequences[:, :steps].astype(np.int64)
    return {**prompt, "decoder_input_ids": dec}, slice(0, steps)


def pad_sequences(seq: np.ndarray, length: int, pad: int) -> np.ndarray:
    """Every framework's sequences at the full length (PyTorch stops once every row ended)."""
    seq = np.asarray(seq).astype(np.int64)
    if seq.shape[1] >= length:
        return seq[:, :length]
    return np.concatenate([seq, np.full((seq.shape[0], length - seq.shape[1]), pad, np.int64)], axis=1)


def reads(module_file: str) -> list:
    """The generation settings a framework's generate module reads (``generation_config.<name>``): what it
    can apply at all. transformers' TF and Flax generate implement a subset of PyTorch's processors."""
    text = Path(module_file).read_text(encoding="utf-8")
    return sorted(set(re.findall(r"generation_config\.([a-z][a-z_]*)\b", text)))


def effective_config(model, fixed: dict) -> dict:
    """The loaded model's generation config with parity's settings, as its non-default values."""
    import copy

    cfg = copy.deepcopy(model.generation_config)
    cfg.update(**fixed)
    return {k: v for k, v in cfg.to_diff_dict().items() if k not in _BOOKKEEPING}


def run(runner, arrays: dict, request: dict) -> tuple[dict, dict]:
    """Worker side: generate, then the teacher-forced forward pass; (arrays for the npz, info for the report)."""
    import time

    task = request["task"]
    fixed = {k: request[k] for k in ("do_sample", "max_new_tokens", "num_beams")}
    prompt = prompts(arrays, task)
    t0 = time.perf_counter()
    seq, processed, info = runner.generate(prompt, fixed)
    info["seconds"] = time.perf_counter() - t0
    steps = fixed["max_new_tokens"]
    start = prompt["input_ids"].shape[1] if task == "causal-lm" else 1
    seq = pad_sequences(seq, start + steps, info["pad_token_id"])
    inputs, where = teacher_forced(prompt, seq, task, steps, "position_ids" in runner.input_names())
    raw = np.asarray(runner.run(inputs)["logits"], np.float32)[:, where].transpose(1, 0, 2)
    out = {"sequences": seq, "raw": raw}
    if processed is not None:
        out["processed"] = np.asarray(processed, np.float32)
    info["prompt_length"] = int(start)
    info["text"] = _decode(runner.spec.path, seq[:, start:])
    return out, info


def _decode(path: str, tokens: np.ndarray) -> list | None:
    """The generated text per row, with the checkpoint's tokenizer (None without one)."""
    from parity.contracts.batch import has_tokenizer

    if not has_tokenizer(Path(path)):
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    return tok.batch_decode(tokens.tolist(), skip_special_tokens=True)
