"""Flax's facts (its runner: parity/worker/runners/flax.py)."""

from __future__ import annotations

from parity.contracts.descriptor import Framework

DESCRIPTOR = Framework(
    key="flax", label="Flax", runner="flax:FlaxRunner", aliases=("jax",),
    requires=("jax", "flax"), extra="flax", main_module="jax", packages=("jax", "jaxlib", "flax"),
    shown_versions=("jax", "flax"), import_names=("jax", "jaxlib", "flax"),
    weight_files=("flax_model.msgpack", "flax_model.msgpack.index.json"),
    native_file="flax_model.msgpack", class_prefix="Flax", auto_module="modeling_flax_auto", auto_prefix="FLAX_",
    use_env=("USE_FLAX", "USE_JAX"), converts_from=("pt",),
    warm_imports=("transformers", "transformers.modeling_flax_utils"),
    worker_env=(("XLA_PYTHON_CLIENT_PREALLOCATE", "false"),),  # before jax starts a backend
    cpu_only_env=(("JAX_PLATFORMS", "cpu"),),
    idle_bytes=700 << 20,  # measured ~0.65 GB after imports, tiny model loaded
    # 1.1B Llama, from pt: 4.6 GB resident after conversion (one tensor read at a time), 5.8 GB at the
    # cache's save (written leaf by leaf), float32 weights 4.1 GiB (docs/benchmarks.md)
    load_factor=1.5, convert_factor=1.5,
    compile_cache=True,
    no_cache_why="transformers' Flax models return one only when called with an initialised cache",
)
