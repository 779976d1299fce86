"""What a worker for a LoadSpec imports, and so which modules it blocks: decided by the parent
(the executor's worker key) and read by nothing framework-side; no framework is imported here."""

from __future__ import annotations

import json
import struct
from importlib import metadata
from pathlib import Path

from parity.contracts import registry

def frameworks_needed(framework: str, spec) -> set:
    """Frameworks a worker must import to load ``spec``: its own, plus the source of a conversion."""
    from parity.contracts.registry import base, get

    framework = base(framework)
    need = {framework, *get(framework).uses}
    if spec.cache_hit:
        return need  # a cached conversion loads natively
    if spec.bridged:  # PyTorch safetensors made by another worker: Flax reads them without torch, TF mostly
        if framework == "tf" and not tf_reads_pt_safetensors(spec.bridged, registry.get("pt").native_file):
            need.add("pt")
        return need
    if spec.converted_from:
        need.add(spec.converted_from)
    if spec.via:
        need.add(spec.via)
    if framework == "flax" and spec.converted_from == "pt" and spec.weights.endswith(".safetensors"):
        need.discard("pt")  # Flax reads PyTorch safetensors with safe_open(framework="flax"): no torch
    if framework == "tf" and spec.converted_from == "pt" and tf_reads_pt_safetensors(spec.path, spec.weights):
        need.discard("pt")  # workarounds/keyed_safe_open.py
    return need


def blocked_packages(needed: set, spec=None) -> list:
    """Packages a worker makes unimportable: the frameworks it does not use, and scipy where unused."""
    from parity.contracts.registry import FRAMEWORKS

    blocked = [pkg for fw in FRAMEWORKS if fw.key not in needed for pkg in fw.import_names]
    if spec is not None and scipy_unused(needed, spec):
        blocked.append("scipy")
    return blocked


def scipy_unused(needed: set, spec) -> bool:
    """Whether a worker can run without scipy (about 0.5 CPU-s of import per PyTorch or TF worker).

    transformers imports scipy.optimize whenever it is installed, for the Hungarian
    matcher of its object-detection losses, and TensorFlow / tf-keras import
    scipy.sparse to accept sparse training data: inference calls neither. Kept
    for JAX (which needs it), for remote code, and wherever the checkpoint's own
    modeling code mentions scipy (FNet's TPU Fourier matrices, ESMFold's init,
    the MaskFormer matchers); an unknown model type keeps it too.
    """
    import importlib.util
    import json
    from pathlib import Path

    if "flax" in needed or spec.trust_remote_code:
        return False
    try:
        config = json.loads((Path(spec.path) / "config.json").read_text())
        found = importlib.util.find_spec("transformers")
    except (OSError, ValueError, ImportError):
        return False
    if found is None or not found.submodule_search_locations:
        return False
    models = Path(list(found.submodule_search_locations)[0]) / "models"
    for model_type in _model_types(config):
        folder = models / model_type.replace("-", "_")
        files = sorted(folder.glob("modeling_*.py")) if folder.is_dir() else []
        if not files or any("scipy" in f.read_text(encoding="utf-8", errors="replace") for f in files):
            return False
    return True


def _model_types(config) -> set:
    """Every model_type in a config, sub-configs (encoder, decoder, text_config...) included."""
    found = set()
    if isinstance(config, dict):
        if isinstance(config.get("model_type"), str):
            found.add(config["model_type"])
        for value in config.values():
            found |= _model_types(value)
    elif isinstance(config, list):
        for value in config:
            found |= _model_types(value)
    return found

def tf_reads_pt_safetensors(folder, weights: str) -> bool:
    """Whether transformers' TF loader can read these PyTorch weights itself, without torch.

    Only the unsharded file PyTorch saves (its descriptor's native file) whose metadata says format "pt", and only
    below safetensors 0.8 (tested with the pinned 0.6.2).
    """
    if weights != registry.get("pt").native_file:
        return False
    try:
        version = tuple(int(x) for x in metadata.version("safetensors").split(".")[:2])
        with open(Path(folder) / weights, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(min(n, 100_000_000)))
    except (metadata.PackageNotFoundError, ValueError, OSError, struct.error):
        return False
    return version < (0, 8) and (header.get("__metadata__") or {}).get("format") == "pt"
