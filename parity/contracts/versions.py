"""This interpreter's library versions and its transformers folder, read without importing a framework
(results.json, the conversion cache's keys, an environment's probe, a runner's availability)."""

from __future__ import annotations

import importlib.util
import platform
from importlib import metadata
from pathlib import Path

from parity.contracts import registry
from parity.contracts.errors import UsageError

PACKAGES = ("parity", "transformers") + registry.packages() + ("numpy", "safetensors", "tokenizers")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def installed_root() -> str | None:
    """This interpreter's transformers package folder (None when it is not installed)."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(list(spec.submodule_search_locations)[0])


def auto_dir(root: str | None) -> Path:
    root = root or installed_root()
    if root is None:
        raise UsageError("transformers is not installed", "pip install 'transformers>=4.40'")
    return Path(root) / "models" / "auto"


def has_auto_module(module: str, root: str | None = None) -> bool:
    """Whether the transformers at ``root`` has this auto module (transformers 5 dropped the TF and Flax ones)."""
    return not module or (auto_dir(root) / f"{module}.py").is_file()


def unavailable_reason(key: str) -> str | None:
    """None when framework ``key`` can be imported in this interpreter; else why not (nothing imported)."""
    fw = registry.get(key)
    # transformers first: under transformers 5 a missing TensorFlow is not what stops TF.
    if installed_root() is None:
        return "transformers not installed"
    if not has_auto_module(fw.auto_module):
        from importlib.metadata import version

        return (f"transformers {version('transformers')} has no {fw.label} classes (transformers 5 "
                "removed TF and Flax; 4.57 is the last line with them: run it there with --env)")
    missing = [m for m in fw.requires if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed" if missing else None
