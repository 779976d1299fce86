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
    if framework == "tf" and spec.converted_from == "pt" and tf_reads_pt_safetensors(spec.path, spec.weights):
        need.discard("pt")
    return need


def tf_reads_pt_safetensors(folder, weights: str) -> bool:
    """Whether transformers' TF loader can read these PyTorch weights itself, without torch.

    TFPreTrainedModel.from_pretrained reads a model.safetensors saved by PyTorch
    (metadata format "pt") with safe_open(framework="tf") when it is not told
    from_pt; from_pt loads the tensors through torch instead (a second framework
    in the worker: its import time and memory). The same float32 values are
    transposed either way (a test checks the numbers). That reader needs a shim
    (runners/tf.py: safe_open handles no longer iterate); it is tested with the
    pinned safetensors 0.6.2 and used below 0.8 only.
    """
    import json
    import struct
    from importlib import metadata
    from pathlib import Path

    if weights != "model.safetensors":
        return False
    try:
        version = tuple(int(x) for x in metadata.version("safetensors").split(".")[:2])
        with open(Path(folder) / weights, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(min(n, 100_000_000)))
    except (metadata.PackageNotFoundError, ValueError, OSError, struct.error):
        return False
    return version < (0, 8) and (header.get("__metadata__") or {}).get("format") == "pt"


def blocked_packages(needed: set) -> list:
    return [pkg for fw, pkgs in PACKAGES.items() if fw not in needed for pkg in pkgs]
