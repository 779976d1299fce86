"""One small runner module per framework; imported on demand."""

import importlib

MODULES = {"pt": "torch", "tf": "tf", "flax": "flax"}
CLASSES = {"pt": "TorchRunner", "tf": "TFRunner", "flax": "FlaxRunner"}


def runner_class(framework: str):
    module = importlib.import_module(f"{__name__}.{MODULES[framework]}")
    return getattr(module, CLASSES[framework])


# transformers imports every installed framework on `import transformers` unless told
# not to (USE_TORCH / USE_TF / USE_FLAX = 0): each worker is told which it may use.
USE_ENV = {"pt": "USE_TORCH", "tf": "USE_TF", "flax": "USE_FLAX"}
PACKAGES = {"pt": ("torch",), "tf": ("tensorflow", "tf_keras"), "flax": ("jax", "jaxlib", "flax")}


def frameworks_needed(framework: str, spec) -> set:
    """Frameworks a worker must import to load ``spec``: its own, plus the source of a conversion."""
    need = {framework}
    if spec.cache_hit:
        return need  # a cached conversion loads natively
    if spec.converted_from:
        need.add(spec.converted_from)
    if spec.via:
        need.add(spec.via)
    if framework == "flax" and spec.converted_from == "pt" and spec.weights.endswith(".safetensors"):
        need.discard("pt")  # Flax reads PyTorch safetensors with safe_open(framework="flax"): no torch
    return need


def blocked_packages(needed: set) -> list:
    return [pkg for fw, pkgs in PACKAGES.items() if fw not in needed for pkg in pkgs]
