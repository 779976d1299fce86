"""Flax runner: FlaxAutoModel classes, matmul precision 'highest', no preallocation.

Models load with ``_do_init=False``: transformers then skips the random
initialisation that the loaded weights would replace at once (about 2 s of a
MiniLM load on 2 cores, more for bigger models) and hands back the params, which
are passed to every call. That holds for native Flax weights (a flax_model.msgpack,
or a conversion-cache entry) and for ``from_pt``: transformers' PyTorch -> Flax
converter reads the model's params only for their names and shapes, so it is
handed the model's shape tree instead (``shape_only_conversion``); the converted
values are the same arrays. A checkpoint that lacks weights the class needs
(they must be initialised) and the composite encoder-decoder classes (they
refuse ``_do_init=False``) load the ordinary way.

Flax models run op by op, and XLA compiles every op for its shapes on first
use; with the cache on, the compiled ops are kept in JAX's persistent
compilation cache (conversion_cache.compile_dir), so a re-check loads them instead.
"""

from __future__ import annotations

import os

from parity.worker.runners.base import Runner
from parity.worker.runners.load_log import LoadLogCapture
from parity.contracts.protocol import LoadReport
from parity.contracts.frameworks.flax import DESCRIPTOR
from parity.worker.runners.workarounds.shape_only_conversion import shape_only_conversion



COMPILE_CACHE_BYTES = 1 << 30  # JAX evicts least recently used entries past this (MiniLM: 0.7 MiB)


def use_compile_cache(jax, folder: str) -> dict:
    """Keep XLA's compiled executables in ``folder`` (see conversion_cache.compile_dir).

    Returns counters that JAX's monitoring events keep up to date: ``requests``
    (compiles that asked the cache) and ``hits`` (loaded instead of compiled).
    """
    try:
        jax.config.update("jax_compilation_cache_dir", folder)
        # Op-by-op execution compiles many small programs, each below JAX's default thresholds.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except AttributeError:  # a JAX without these options: compile every time, as before
        return None
    try:
        import filelock  # noqa: F401  JAX needs it to lock entries and to evict past a size cap

        jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_BYTES)
    except (ImportError, AttributeError):
        pass
    counts = {"dir": folder, "requests": 0, "hits": 0}

    def count(event: str, **_):
        if event == "/jax/compilation_cache/compile_requests_use_cache":
            counts["requests"] += 1
        elif event == "/jax/compilation_cache/cache_hits":
            counts["hits"] += 1

    jax.monitoring.register_event_listener(count)
    return counts


class FlaxRunner(Runner):
    descriptor = DESCRIPTOR
    compile_cache: dict | None = None  # XLA compilation cache counters, when the cache is on

    def _import_impl(self) -> None:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before jax starts a backend
        super()._import_impl()

    def _load_impl(self) -> LoadReport:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax
        import transformers

        jax.config.update("jax_default_matmul_precision", "highest")
        if self.spec.compile_cache:
            self.compile_cache = use_compile_cache(jax, self.spec.compile_cache)
        if self.spec.device == "cpu":
            jax.config.update("jax_platforms", "cpu")
        platform = jax.devices()[0].platform
        self._require_gpu(platform == "gpu", "JAX")
        self.device = jax.devices()[0]

        cls = getattr(transformers, self.spec.class_name)
        notes = []
        self.params = None
        with self._weights_source(notes) as (path, source):
            kwargs = {"trust_remote_code": self.spec.trust_remote_code}
            if source == "pt":
                kwargs["from_pt"] = True
            with LoadLogCapture("transformers.modeling_flax_utils") as capture, jax.default_device(self.device):
                self.model, self.params = self._load_params_only(cls, path, kwargs)
                if self.params is None:
                    capture.info.update(missing_keys=[], unexpected_keys=[], mismatched_keys=[])  # said again below
                    self.model = cls.from_pretrained(path, **kwargs)
                    # Committed to self.device as the _do_init=False params are: jax compiles ops on
                    # committed and uncommitted arrays under different keys, and a re-check (which
                    # loads the cached conversion natively) should find the ops this load compiled.
                    self.model.params = jax.device_put(self.model.params, self.device)
        report = self._report(f"{platform}:{self.device.id}" if platform != "cpu" else "cpu", capture.info)
        report.notes += notes
        # Inference mode is `train=False` on most Flax classes, `deterministic=True` on a few (OPT).
        self.flags = self._flags(self.model.__call__, report.notes, train=False, deterministic=True)
        if "train" in self.flags:
            self.flags.pop("deterministic", None)
        return report

    def _load_params_only(self, cls, path, kwargs):
        """(model, params) loaded with ``_do_init=False``: no random init (native weights, or from_pt through
        shape_only_conversion); (None, None) when weights are missing or the class insists on an init."""
        import jax
        from flax.traverse_util import flatten_dict

        try:
            with shape_only_conversion():
                model, params = cls.from_pretrained(path, _do_init=False, **kwargs)
        except ValueError as e:
            if "_do_init" in str(e):  # the composite (Vision/Speech)EncoderDecoder classes insist on an init
                return None, None
            raise
        if model.required_params - set(flatten_dict(params)):
            return None, None  # the ordinary load initialises the missing ones and logs them
        # transformers keeps _do_init=False params on the CPU; the model runs where self.device is.
        return model, jax.device_put(params, self.device)

    def _forward(self):
        return self.model.__call__

    def save(self, folder: str) -> None:
        from parity.worker.runners.flax_save import save

        save(self.model, self.params, folder)  # save_pretrained's files, the weights one leaf at a time

    def _float_dtypes(self) -> set:
        import jax
        import jax.numpy as jnp

        leaves = jax.tree_util.tree_leaves(self.model.params if self.params is None else self.params)
        return {str(x.dtype) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)}

    def _to_float32(self) -> None:
        """Flax keeps the checkpoint's dtype in the params (a float16 checkpoint computes float16 matmuls)."""
        import jax
        import jax.numpy as jnp

        cast = lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
        if self.params is None:
            self.model.params = jax.tree_util.tree_map(cast, self.model.params)
        else:
            self.params = jax.tree_util.tree_map(cast, self.params)

    def _weight_arrays(self):
        import numpy as np
        from flax.traverse_util import flatten_dict

        for key, value in flatten_dict(self.model.params if self.params is None else self.params).items():
            yield "/".join(map(str, key)), np.asarray(value)

    def _export_impl(self) -> dict:
        # The mapping of transformers' Flax -> PyTorch converter (see parity.worker.weights.flax_to_canonical).
        import numpy as np
        from flax.traverse_util import flatten_dict

        from parity.worker.weights import flax_to_canonical

        out = {}
        for key, value in flatten_dict(self.model.params if self.params is None else self.params).items():
            name, arr = flax_to_canonical(key, np.asarray(value))
            out[name] = arr
        return out

    generate_module = "transformers.generation.flax_utils"

    def _generate_impl(self, prompt: dict, fixed: dict) -> tuple:
        """Flax's generate returns sequences only (FlaxGreedySearchOutput, FlaxBeamSearchOutput's scores are
        per sequence): no per-step scores."""
        import jax
        import numpy as np

        with jax.default_device(self.device):
            extra = {} if self.params is None else {"params": self.params}
            out = self.model.generate(**{k: jax.numpy.asarray(v) for k, v in prompt.items()}, **fixed, **extra)
        return np.asarray(out.sequences), None

    def _run_impl(self, arrays: dict) -> dict:
        from parity.contracts.outputs import flatten  # numpy: kept out of the parent, which reads descriptors only

        import jax
        import numpy as np

        with jax.default_device(self.device):
            extra = {} if self.params is None else {"params": self.params}
            out = self.model(**arrays, **self.flags, **extra)
        return flatten(dict(out.items()), np.asarray)
