"""Flatten a ModelOutput into stable names, and order names as the model runs.

``{"logits": arr, "hidden_states": (h0, h1, ...)}`` becomes
``{"logits": arr, "hidden_states.0": h0, "hidden_states.1": h1}``; the same
name means the same tensor in every framework.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import numpy as np

GROUPS = ("logits", "hidden_states", "attentions", "cache")
# Legacy cache tuples per layer: (self k, self v[, cross k, cross v]).
CACHE_PARTS = ("k", "v", "cross_k", "cross_v")

_LAYERED = re.compile(r"^(?P<prefix>[a-z_]*?)(?P<kind>hidden_states|attentions)\.(?P<idx>\d+)(?P<rest>.*)$")
# Where a stack sits in the forward pass: encoders (and vision/text towers) run first.
_STACK = {"": 0, "encoder_": 0, "vision_": 0, "text_": 1, "decoder_": 2, "cross_": 2}


def flatten(output: Mapping[str, Any], to_numpy: Callable[[Any], np.ndarray] = np.asarray,
            float_dtype=np.float32) -> dict:
    """Turn a (possibly nested) ModelOutput into ``{name: numpy array}``, floats as ``float_dtype``."""
    flat: dict[str, np.ndarray] = {}

    def walk(prefix: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            arr = np.asarray(to_numpy(value))
            if (np.issubdtype(arr.dtype, np.floating) or arr.dtype.name == "bfloat16") and arr.dtype != float_dtype:
                arr = arr.astype(float_dtype)
            flat[prefix] = arr

    for key, value in output.items():
        if key == "past_key_values" and value is not None:
            walk(key, _cache_layers(value))
            continue
        walk(key, value)
    return flat


def _cache_layers(cache):
    """Any cache form -> ``[{"k": .., "v": .., "cross_k": .., "cross_v": ..}, ...]`` per layer.

    PyTorch's DynamicCache / EncoderDecoderCache arrive as legacy tuples (the
    torch runner calls to_legacy_cache); TF GPT-2 stacks each layer's key and
    value into one (2, batch, heads, tokens, dim) tensor; the rest are tuples.
    """
    layers = []
    for layer in cache:
        if not isinstance(layer, (list, tuple)):
            shape = getattr(layer, "shape", ())
            if len(shape) == 5 and shape[0] == 2:  # stacked (key, value)
                layer = (layer[0], layer[1])
            else:
                layers.append(layer)
                continue
        layers.append({CACHE_PARTS[i] if i < len(CACHE_PARTS) else str(i): t for i, t in enumerate(layer)})
    return layers


def is_cache(name: str) -> bool:
    """A decoding cache entry (``past_key_values.0.k``)."""
    return group(name) == "cache"


def base(name: str) -> str:
    """The ModelOutput field a flattened name comes from: ``encoder_attentions.3`` -> ``encoder_attentions``."""
    return name.split(".", 1)[0]


def group(name: str) -> str:
    """Output group used by ``--outputs``: hidden_states, attentions, cache or logits (head outputs)."""
    field = base(name)
    if field == "past_key_values":
        return "cache"
    if field.endswith("hidden_states"):
        return "hidden_states"
    if field.endswith("attentions"):
        return "attentions"
    return "logits"


def _split_layer(name: str):
    """(prefix, kind, layer, rest) of ``<prefix><kind>.<layer><rest>``, kind hidden_states or attentions."""
    m = _LAYERED.match(name)
    return (m.group("prefix"), m.group("kind"), int(m.group("idx")), m.group("rest")) if m else None


def layer_of(name: str) -> tuple[str, str, int] | None:
    """(prefix, kind, layer) of a per-layer output named exactly ``<prefix><kind>.<layer>``:
    ``decoder_hidden_states.2`` -> ("decoder_", "hidden_states", 2), ``cross_attentions.0`` ->
    ("cross_", "attentions", 0); None for head outputs, caches and deeper names. The one parser of
    per-layer names (forward-pass order, --explain's layer table, the reports' layer chart)."""
    parts = _split_layer(name)
    return parts[:3] if parts is not None and parts[3] == "" else None


def model_order(names) -> list[str]:
    """Sort names in forward-pass order: embeddings, each layer, then the head outputs.

    Layer N's attention map sits between hidden_states.N (its input) and
    hidden_states.N+1 (its output), so the first failing name is where
    the frameworks part.
    """
    names = list(names)

    def key(item):
        pos, name = item
        tower = None
        if "_model_output." in name:  # CLIP: text_model_output.hidden_states.0 runs in the text tower
            tower, name = name.split("_model_output.", 1)
        parts = _split_layer(name)
        if parts is None:
            return (9, 0, 0, pos)
        prefix, kind, layer, _ = parts
        stack = _STACK.get(prefix if tower is None else tower + "_", 5)
        sub = 0 if kind == "hidden_states" else (2 if prefix == "cross_" else 1)
        return (stack, layer, sub, pos)

    return [n for _, n in sorted(enumerate(names), key=key)]
