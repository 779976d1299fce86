"""Framework-neutral weights: the canonical names and layouts a worker exports them in.

Every runner exports its model's weights as ``{canonical name: numpy array}``
where the canonical name and layout are PyTorch's (``bert.encoder.layer.0.
attention.self.query.weight``, Linear weights as (out, in), convs OIHW). The
TF and Flax runners map their own names with the rules transformers uses for
its converters, so two exports of the same model compare key by key whatever
framework each came from (parity.numerics.weights_diff). Pure numpy: no framework is imported here.
"""

from __future__ import annotations

import numpy as np


def strip_base_prefix(weights: dict, prefix: str | None) -> dict:
    """Drop ``prefix.`` when every name has it.

    TF base models keep their main layer's scope (``bert.embeddings...``) where
    the PyTorch and Flax base models have none (``embeddings...``); a model
    with a head has names outside the prefix and is left alone.
    """
    if not prefix or not weights:
        return weights
    dotted = prefix + "."
    if all(k.startswith(dotted) for k in weights):
        return {k[len(dotted):]: v for k, v in weights.items()}
    return weights


def flax_to_canonical(key: tuple, value: np.ndarray) -> tuple[str, np.ndarray]:
    """One flattened Flax param -> (PyTorch name, array in PyTorch layout).

    Mirrors ``transformers.modeling_flax_pytorch_utils.load_flax_weights_in_pytorch_model``:
    4-D ``kernel`` HWIO -> ``weight`` OIHW, other ``kernel`` -> ``weight`` transposed,
    ``scale`` / ``embedding`` -> ``weight``, batch-norm ``mean`` / ``var`` -> ``running_*``.
    """
    key = tuple(str(k) for k in key)
    if key and key[0] in ("params", "batch_stats"):
        key = key[1:]
    last = key[-1]
    if last == "kernel" and value.ndim == 4:
        key, value = key[:-1] + ("weight",), np.transpose(value, (3, 2, 0, 1))
    elif last == "kernel":
        key, value = key[:-1] + ("weight",), value.T
    elif last in ("scale", "embedding"):
        key = key[:-1] + ("weight",)
    elif last == "mean":
        key = key[:-1] + ("running_mean",)
    elif last == "var":
        key = key[:-1] + ("running_var",)
    return ".".join(key), np.ascontiguousarray(value)


def tf_to_pt_layout(value: np.ndarray, transpose: str) -> np.ndarray:
    """Undo TF's layout given transformers' TransposeType name (NO, SIMPLE, CONV1D, CONV2D)."""
    if transpose == "SIMPLE":
        value = value.T
    elif transpose == "CONV2D":   # TF (H, W, I, O) -> PyTorch (O, I, H, W)
        value = np.transpose(value, (3, 2, 0, 1))
    elif transpose == "CONV1D":   # TF (K, I, O) -> PyTorch (O, I, K)
        value = np.transpose(value, (2, 1, 0))
    return np.ascontiguousarray(value)
