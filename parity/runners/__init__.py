"""One small runner module per framework; imported on demand."""

import importlib

MODULES = {"pt": "torch", "tf": "tf", "flax": "flax"}
CLASSES = {"pt": "TorchRunner", "tf": "TFRunner", "flax": "FlaxRunner"}


def runner_class(framework: str):
    module = importlib.import_module(f"{__name__}.{MODULES[framework]}")
    return getattr(module, CLASSES[framework])
