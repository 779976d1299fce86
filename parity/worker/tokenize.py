"""Tokenizer parity, the worker's part: this side's own tokenizer, loaded as a user's code would load it in this
environment (transformers' AutoTokenizer; KerasHub's preprocessor / tokenizer from the same folder), tokenizes
the check's texts. The parent compares what each side answers (parity.numerics.tokenizer_compare); it imports
no tokenizer itself. A tokenizer that cannot load is this side's ``{"error": line}``, never a crash."""

from __future__ import annotations

OPTIONS = ("legacy", "add_prefix_space", "strip_accents", "do_lower_case", "add_bos_token", "add_eos_token")


def run(runner, part: dict, error_line) -> dict:
    """``error_line``: the serve loop's one-line form of an exception (passed in: serving imports this module)."""
    try:
        if runner.descriptor.catalog:  # KerasHub: its own converter, its own tokenizer
            return _keras(runner.spec, part)
        return _transformers(runner.spec, part)
    except Exception as exc:
        return {"error": error_line(exc)}


def _transformers(spec, part: dict) -> dict:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)
    texts = []
    for text in part["texts"]:
        enc = tok(text)
        ids = [int(i) for i in enc["input_ids"]]
        texts.append({"ids": ids, "tokens": [str(t) for t in tok.convert_ids_to_tokens(ids)],
                      "mask": [int(m) for m in enc.get("attention_mask", [1] * len(ids))]})
    kwargs = getattr(tok, "init_kwargs", {}) or {}
    return {"class": type(tok).__name__, "library": f"transformers {transformers.__version__}",
            "padding_side": tok.padding_side, "texts": texts,
            "special": {k: str(v) for k, v in tok.special_tokens_map.items()},
            "options": {k: _plain(getattr(tok, k, kwargs.get(k))) for k in OPTIONS
                        if getattr(tok, k, kwargs.get(k)) is not None}}


def _keras(spec, part: dict) -> dict:
    import numpy as np
    import keras_hub

    tok = keras_hub.models.Tokenizer.from_preset(spec.path)
    pre = None
    try:
        pre = keras_hub.models.TextClassifierPreprocessor.from_preset(spec.path, sequence_length=part["max_length"])
    except Exception:  # no classifier preprocessor for this model: the bare tokenizer, as a user would fall back to
        pre = None
    texts = []
    for text in part["texts"]:
        if pre is not None:
            out = pre([text])
            x = out[0] if isinstance(out, tuple) else out
            mask = np.asarray(x["padding_mask"])[0].astype(bool)
            ids = [int(i) for i in np.asarray(x["token_ids"])[0][mask]]
        else:
            ids = [int(i) for i in np.asarray(tok(text)).reshape(-1)]
        texts.append({"ids": ids, "tokens": [str(tok.id_to_token(i)) for i in ids], "mask": [1] * len(ids)})
    return {"class": type(pre or tok).__name__, "library": f"keras-hub {keras_hub.__version__}",
            "padding_side": "right", "texts": texts, "special": {}, "options": {}}


def _plain(value):
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
