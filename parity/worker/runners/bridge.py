"""TF <-> Flax has no direct path in transformers: go through PyTorch weights.

Loads the PyTorch twin class from the other framework's weights and saves it
(safetensors) into a temporary folder that the target framework loads
``from_pt``. Needs torch and the source framework in this process.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from parity.contracts.registry import pt_twin


def via_pytorch(path: str, class_name: str, weights: str, source: str, trust_remote_code: bool = False) -> Path:
    """Return a folder holding config + model.safetensors converted from ``source``."""
    import transformers

    from parity.worker.runners.workarounds.pt_conversion import convert_to_pt

    model, _, _ = convert_to_pt(getattr(transformers, pt_twin(class_name)), path, weights, source,
                                trust_remote_code=trust_remote_code)
    out = Path(tempfile.mkdtemp(prefix="parity-bridge-"))
    model.save_pretrained(out, safe_serialization=True)
    return out


def cleanup(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
