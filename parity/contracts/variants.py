"""Loading variants: a framework key's ``:OPTION`` suffix, ``FW[@ENV][:OPTION...]`` (``pt@v5:auto``, ``pt:bf16``).

A migration changes how a model is loaded as much as which library loads it: transformers 5 loads
``dtype="auto"`` (a bfloat16 checkpoint stays bfloat16), and users run bf16 / fp16. A variant says how
one side loads; the key names the side everywhere (results.json, reports, worker files). Options:

- ``auto``: exactly what ``from_pretrained(path)`` does with no dtype or attention argument there;
- ``fp32`` / ``bf16`` / ``fp16``: that dtype (the weights and the computation);
- ``eager`` / ``sdpa``: that attention implementation (PyTorch).

A key without options loads as parity always has: float32, eager attention when attentions are compared.
Which options a framework can load is its descriptor's ``load_options``.
"""

from __future__ import annotations

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ATTENTION = ("eager", "sdpa")
OPTIONS = ("auto", *DTYPES, *ATTENTION)
REDUCED = ("bfloat16", "float16")  # dtypes whose verdicts use the reduced-precision defaults (numerics.precision)


def parse(key: str) -> tuple[str, str, tuple]:
    """"pt@v5:auto:eager" -> ("pt", "v5", ("auto", "eager")); no validation (config.framework_key does it)."""
    head, *options = str(key).split(":")
    fw, _, env = head.partition("@")
    return fw, env, tuple(options)


def options(key: str) -> tuple:
    return parse(key)[2]


def dtype(key_or_options) -> str | None:
    """The dtype a key asks for: "float32", "bfloat16", "float16", "auto" (the library's choice), or None (parity's
    default, float32)."""
    opts = options(key_or_options) if isinstance(key_or_options, str) else tuple(key_or_options)
    return next((DTYPES.get(o, o) for o in opts if o in DTYPES or o == "auto"), None)


def attention(key_or_options) -> str | None:
    """The attention implementation a key asks for, "auto" (the library's choice under ``auto``), or None."""
    opts = options(key_or_options) if isinstance(key_or_options, str) else tuple(key_or_options)
    chosen = next((o for o in opts if o in ATTENTION), None)
    return chosen or ("auto" if "auto" in opts else None)


def conflict(opts) -> str | None:
    """Why a set of options contradicts itself (two dtypes, two attention implementations), or None."""
    dtypes = [o for o in opts if o in DTYPES or o == "auto"]
    attn = [o for o in opts if o in ATTENTION]
    if len(dtypes) > 1:
        return f"{' and '.join(dtypes)} both set the dtype"
    if len(attn) > 1:
        return f"{' and '.join(attn)} both set the attention implementation"
    return None
