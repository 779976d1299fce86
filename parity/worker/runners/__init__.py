"""One small runner module per framework; each framework's facts are in parity/contracts/frameworks/.

Runner modules import their framework lazily, inside their methods.
"""

import importlib


def runner_class(key: str):
    """The Runner class of a framework key ("pt@v5" too), from its descriptor's ``runner`` ("torch:TorchRunner")."""
    from parity.contracts.registry import get

    module, cls = get(key).runner.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
