"""KerasHub's three frameworks, one per Keras backend (their runner: parity/worker/runners/keras.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from parity.contracts.descriptor import Framework

NO_ATTENTIONS = "KerasHub's transformer layers return no attention maps"
NO_CACHE = "KerasHub's models build a cache only in generate()"


def keras_default_backend() -> str:
    """The backend ``import keras`` picks: KERAS_BACKEND, else keras.json's, else tensorflow (Keras's rule)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _descriptor(key: str, backend: str, label: str, module: str, uses: tuple, idle_mb: int) -> Framework:
    return Framework(
        key=key, label=f"KerasHub on {label}", runner=f"keras:{type_name(key)}",
        aliases=("keras",) if keras_default_backend() == backend else (),
        requires=("keras_hub", module), extra="keras", main_module="keras_hub",
        packages=("keras", "keras-hub"), shown_versions=("keras-hub",),
        converts_from=("pt",), own_env=(("KERAS_BACKEND", backend),), uses=uses,
        catalog="keras_catalog", no_outputs=(("attentions", NO_ATTENTIONS), ("cache", NO_CACHE)),
        default=False, idle_bytes=idle_mb << 20,
        load_options=("auto", "fp32", "bf16", "fp16"),  # from_preset(dtype=); Keras picks its own attention
    )


def type_name(key: str) -> str:
    return {"keras-jax": "KerasJaxRunner", "keras-tf": "KerasTFRunner", "keras-torch": "KerasTorchRunner"}[key]


# keras_hub imports TensorFlow whatever the backend (tensorflow-text), so every Keras worker may import it.
# idle_bytes: resident memory after imports with the tiny BERT loaded, measured 773 / 650 / 896 MB
# (2-core CPU machine, pinned stack).
KERAS_JAX = _descriptor("keras-jax", "jax", "JAX", "jax", ("tf", "flax"), 800)
KERAS_TF = _descriptor("keras-tf", "tensorflow", "TensorFlow", "tensorflow", ("tf",), 700)
KERAS_TORCH = _descriptor("keras-torch", "torch", "PyTorch", "torch", ("tf", "pt"), 900)
