"""``--pipeline``: transformers' pipeline for the task, built in each worker from the model it already loaded.

The pipeline is built from the loaded model instance and the checkpoint's own
tokenizer, never from the folder: ``pipeline(task, model=<folder>,
framework="tf")`` goes through TF's from_pretrained with a torch dtype and fails
in transformers 4.57.6 (docs/findings.md). Every framework gets the same inputs,
made from the check's texts by one deterministic rule per task. Pipelines run
PyTorch and TensorFlow models only: a framework without one (Flax) is skipped,
and said so.
"""

from __future__ import annotations

import json



def inputs(task: str, texts: list, mask_token: str | None) -> list:
    """The pipeline's inputs: texts; question/context pairs (each text asks about the next); for fill-mask each
    text with its middle word masked."""
    if task == "question-answering":
        return [{"question": q, "context": texts[(i + 1) % len(texts)]} for i, q in enumerate(texts)]
    if task == "fill-mask":
        out = []
        for text in texts:
            words = text.split()
            words[len(words) // 2] = mask_token
            out.append(" ".join(words))
        return out
    return list(texts)


def _call(pipe, task: str, items: list, req: dict):
    if task == "text-classification":
        return pipe(items, top_k=None)
    if task == "question-answering":
        return [pipe(**item) for item in items]
    if task == "fill-mask":
        return [pipe(item, top_k=req["top_k"]) for item in items]
    if task in ("text-generation", "text2text-generation"):
        extra = {"return_full_text": False} if task == "text-generation" else {}
        return pipe(items, max_new_tokens=req["max_new_tokens"], do_sample=False, **extra)
    return pipe(items)


def run(runner, req: dict) -> dict:
    """Worker side: the pipeline over the inputs; JSON-ready outputs, or ``skipped`` with the reason."""
    if runner.pipeline_framework is None:
        return {"skipped": f"transformers' pipelines run PyTorch and TensorFlow models only, not "
                           f"{runner.descriptor.label}"}
    import transformers

    task = req["task"]
    tok = transformers.AutoTokenizer.from_pretrained(runner.spec.path)
    # dtype=None: the model is loaded already, and the default "auto" is looked up on torch, which a TF worker
    # has not imported (NameError in transformers 4.57.6, docs/findings.md).
    pipe = transformers.pipeline(task, model=runner.model, tokenizer=tok, framework=runner.pipeline_framework,
                                 dtype=None)
    if getattr(pipe.tokenizer, "pad_token", True) is None and task == "text-generation":
        pipe.tokenizer.pad_token = pipe.tokenizer.eos_token
    texts = [truncated(tok, text, req.get("max_length")) for text in req["texts"]]
    items = inputs(task, texts, tok.mask_token)
    outputs = each(lambda item: _call(pipe, task, [item], req)[0], items)
    # numpy scalars -> plain JSON numbers
    return {"task": task, "inputs": items, "outputs": json.loads(json.dumps(outputs, default=_plain)),
            "max_length": req.get("max_length"), "truncated": sum(a != b for a, b in zip(texts, req["texts"]))}


def each(call, items: list) -> list:
    """``call`` on every input, one at a time, so that a failure names the input it failed on."""
    outputs = []
    for n, item in enumerate(items):
        try:
            outputs.append(call(item))
        except Exception as exc:
            shown = item if isinstance(item, str) else json.dumps(item)
            raise RuntimeError(f"input {n} ({shown[:60]!r}): {type(exc).__name__}: {exc}") from exc
    return outputs


def truncated(tok, text: str, max_length: int | None) -> str:
    """``text`` cut to ``max_length`` tokens as the forward batch is (special tokens counted), decoded back:
    the pipeline tokenizes it again, and a text longer than the position table fails inside the model."""
    if not max_length:
        return text
    ids = tok(text, truncation=True, max_length=max_length)["input_ids"]
    if len(ids) >= max_length:
        return tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return text


def _plain(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
