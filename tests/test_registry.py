"""Each framework's facts are declared once, as DESCRIPTOR in parity/contracts/frameworks/ (listed by
parity/contracts/registry.py), and its runner (parity/worker/runners/) reads them."""

import re
from pathlib import Path

import pytest

from parity.contracts import registry
from parity.worker.runners import runner_class

PACKAGE = Path(__file__).resolve().parents[1] / "parity"


def test_descriptors_are_consistent():
    keys = [fw.key for fw in registry.FRAMEWORKS]
    assert len(set(keys)) == len(keys)
    aliases = [a for fw in registry.FRAMEWORKS for a in fw.aliases]
    assert len(set(aliases)) == len(aliases) and not set(aliases) & set(keys)
    for fw in registry.FRAMEWORKS:
        assert runner_class(fw.key).descriptor is fw
        # KerasHub reads transformers' PyTorch weights through its own converters: no files or switches of its own
        assert fw.native_file in fw.weight_files if fw.weight_files else fw.catalog and not fw.native_file
        assert set(fw.converts_from) <= set(keys) - {fw.key}
        assert set(fw.uses) <= set(keys) - {fw.key}
        assert fw.idle_bytes > 0 and fw.packages and fw.requires and (fw.use_env or fw.catalog)


@pytest.mark.parametrize("name, key", [("torch", "pt"), ("PyTorch", "pt"), ("tensorflow", "tf"), ("JAX", "flax"),
                                       ("flax", "flax"), ("mxnet", "mxnet")])
def test_aliases(name, key):
    assert registry.canonical(name) == key


def test_conversion_routes_follow_the_descriptors():
    assert registry.route("tf", "pt") is None and registry.route("pt", "flax") is None
    assert registry.route("pt", "pt") is None
    # transformers converts only between PyTorch and each other framework
    assert registry.route("tf", "flax") == "pt" and registry.route("flax", "tf") == "pt"


def _sources_outside_runners():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if "runners" not in parts and "frameworks" not in parts:
            yield path, path.read_text(encoding="utf-8")


def test_no_module_outside_runners_spells_weight_files_or_switches():
    """Adding a framework is one runner module, its descriptor and one registry line: nothing else names its
    files or switches."""
    names = {n for fw in registry.FRAMEWORKS for n in fw.weight_files}
    names |= {v for fw in registry.FRAMEWORKS for v in fw.use_env}
    found = [f"{path.name}: {name}" for path, text in _sources_outside_runners() for name in sorted(names)
             if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text)]
    assert found == []


@pytest.mark.parametrize("backend, key", [("jax", "keras-jax"), ("tensorflow", "keras-tf"), ("torch", "keras-torch")])
def test_keras_alias_follows_keras_backend(backend, key, tmp_path):
    """`keras` is the backend Keras itself would pick: KERAS_BACKEND, read when the registry is built."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "from parity.contracts import registry; print(registry.canonical('keras'))"],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out == key


def test_keras_alias_without_keras_backend_is_keras_default(tmp_path, monkeypatch):
    from parity.contracts.frameworks import keras

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras.keras_default_backend() == "tensorflow"  # Keras's default with no keras.json
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert keras.keras_default_backend() == "jax"
