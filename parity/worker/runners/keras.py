"""KerasHub runner: Keras 3 on JAX, TensorFlow or PyTorch, loading transformers checkpoints as a user would.

``keras_hub.models.<Class>.from_preset(<checkpoint folder>)`` runs KerasHub's own
transformers converter on the PyTorch safetensors, unpatched; parity only watches
it (``_recording``: which checkpoint tensor went into which Keras variable, and
through which hook), to say which variables it left at their initial values and to
follow the weights back to transformers' names for ``--explain``.

The backend is fixed when Keras is imported, so each backend is its own framework
key and worker (``KERAS_BACKEND`` in that worker's environment): ``keras-jax``,
``keras-tf``, ``keras-torch``; ``keras`` means the one Keras itself would pick.
Outputs come from the functional graph: the input of the first transformer layer
(the embeddings), each layer's output, then the backbone's sequence output (after a
final norm where the model has one, as transformers' last hidden state is) and its
pooled output; a causal LM's logits from the task model itself. Which model types
and tasks KerasHub converts is read from its source (keras_catalog.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from parity.contracts.errors import FrameworkError
from parity.contracts.protocol import LoadReport
from parity.worker.runners.base import Runner
from parity.contracts.frameworks.keras import KERAS_JAX, KERAS_TF, KERAS_TORCH

# parity's input names -> KerasHub's, and what transformers fills in when one is left out
INPUTS = {"input_ids": "token_ids", "attention_mask": "padding_mask", "token_type_ids": "segment_ids"}
DEFAULTS = {"padding_mask": "ones", "segment_ids": "zeros"}


@contextlib.contextmanager
def _recording(ported: list):
    """Note every ``port_weight`` KerasHub's converter makes, (variable, checkpoint key, hf shape, hook),
    in ``ported``; yields the set of checkpoint tensors it reads.

    The calls go through unchanged; the hook is wrapped only to see the tensor's shape.
    """
    from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader

    original, original_get = SafetensorLoader.port_weight, SafetensorLoader.get_tensor
    read = set()  # every checkpoint tensor the converter read (XLM-RoBERTa folds one in by hand)

    def get_tensor(loader, hf_weight_key):
        tensor = original_get(loader, hf_weight_key)
        read.add(loader.get_prefixed_key(hf_weight_key, _keys(loader)))
        return tensor

    def port_weight(loader, keras_variable, hf_weight_key, hook_fn=None):
        seen = {}

        def hook(tensor, shape):
            seen["shape"] = tuple(tensor.shape)
            return hook_fn(tensor, shape) if hook_fn else tensor

        original(loader, keras_variable, hf_weight_key, hook)
        key = loader.get_prefixed_key(hf_weight_key, _keys(loader))
        ported.append((keras_variable, key, seen.get("shape"), hook_fn))

    SafetensorLoader.port_weight, SafetensorLoader.get_tensor = port_weight, get_tensor
    try:
        yield read
    finally:
        SafetensorLoader.port_weight, SafetensorLoader.get_tensor = original, original_get


def _keys(loader):
    """The checkpoint's tensor names as the loader resolves them (one file, or a sharded index)."""
    if loader.safetensor_config is not None:
        return loader.safetensor_config["weight_map"]
    return next(iter(loader.safetensor_files.values()))


def _positions_class():
    import numpy as np

    class Positions(np.ndarray):
        """Element positions that pass through a converter hook's dtype casts unchanged."""

        def astype(self, dtype, *args, **kwargs):
            return self

    return Positions


class KerasRunner(Runner):
    """One Keras backend; the subclasses below only name their descriptor."""

    def __init__(self, spec):
        super().__init__(spec)
        # KerasHub converts at every load and writes no transformers weights: no conversion cache entry.
        spec.cache_hit = spec.cache_store = None
        self.ported: list = []
        self.task_model = None

    @property
    def backend(self) -> str:
        return dict(self.descriptor.own_env)["KERAS_BACKEND"]

    def _import_impl(self) -> None:
        keras = sys.modules.get("keras")
        if keras is not None and keras.backend.backend() != self.backend:
            raise FrameworkError(f"Keras already runs the {keras.backend.backend()} backend in this process; "
                                 f"{self.framework} needs {self.backend}",
                                 "drop --inline: each framework then gets its own worker")
        os.environ["KERAS_BACKEND"] = self.backend  # the worker's environment says so already; --inline too
        import keras_hub

        getattr(keras_hub.models, self.spec.class_name, None)

    def _load_impl(self) -> LoadReport:
        if self.spec.converted_from != "pt" or self.spec.via or not self.spec.weights.startswith("model.safetensors"):
            raise FrameworkError(f"KerasHub converts transformers' PyTorch safetensors only, not {self.spec.weights}",
                                 "save the checkpoint with save_pretrained(safe_serialization=True)")
        self._import_impl()
        import keras_hub

        device = self._full_precision()
        cls = getattr(keras_hub.models, self.spec.class_name)
        # parity feeds token ids: a task's preprocessor (its tokenizer) is not loaded
        extra = {} if issubclass(cls, keras_hub.models.Backbone) else {"preprocessor": None}
        with _recording(self.ported) as read:
            model = cls.from_preset(self.spec.path, **_dtype(self.spec.options), **extra)
        self.model = model
        backbone = getattr(model, "backbone", None)
        self.task_model, self.backbone = (model, backbone) if backbone is not None else (None, model)
        self.calls = self._layer_calls()
        self.features = self._feature_model()
        report = self._report(device, None)
        report.missing = sorted({v.path for v in self.model.weights} - {v.path for v, *_ in self.ported})
        report.unexpected = sorted(set(self._file_keys()) - read)
        report.notes.append(f"loaded by KerasHub's transformers converter as {type(model).__name__} "
                            f"(Keras {self.backend} backend)")
        return report

    def _full_precision(self) -> str:
        """float32 matmuls on every backend (no TF32, JAX 'highest'); the device the backend computes on."""
        if self.backend == "jax":
            import jax

            jax.config.update("jax_default_matmul_precision", "highest")
            if self.spec.device == "cpu":
                jax.config.update("jax_platforms", "cpu")
            gpu = jax.devices()[0].platform == "gpu"
        elif self.backend == "torch":
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.set_float32_matmul_precision("highest")
            gpu = torch.cuda.is_available()  # Keras's torch backend then places everything on cuda
        else:
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(False)
            gpu = bool(tf.config.list_physical_devices("GPU"))
        self._require_gpu(gpu, f"Keras ({self.backend})")
        return "gpu" if gpu else "cpu"

    def _file_keys(self) -> list:
        from safetensors import safe_open

        folder = Path(self.spec.path)
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            return list(json.loads(index.read_text())["weight_map"])
        with safe_open(str(folder / "model.safetensors"), framework="np") as f:
            return list(f.keys())

    def _feature_model(self):
        """A functional model from the backbone's inputs to every hidden state and its outputs."""
        import keras

        calls = self._layer_calls()
        if not calls:
            raise FrameworkError(f"{type(self.backbone).__name__} lists no transformer_layers to read hidden "
                                 "states from", "report this with the keras-hub version in results.json")
        out = self.backbone.output
        outs = dict(out) if isinstance(out, dict) else {"sequence_output": out}
        if self.spec.output_hidden_states:
            outs["hidden_states.0"] = calls[0].arguments.args[0]
            for i, node in enumerate(calls[:-1], start=1):
                outs[f"hidden_states.{i}"] = node.outputs[0]
        return keras.Model(self.backbone.input, outs)

    def _layer_calls(self) -> list:
        """Every call of a transformer layer in the graph, in the order the model makes them.

        ALBERT shares its layers (``transformer_layers`` holds groups, each layer called several
        times): the calls are the layers' nodes ordered by their outputs' creation (KerasTensor
        names count up as the graph is built).
        """
        layers, todo = [], list(getattr(self.backbone, "transformer_layers", None) or [])
        while todo:
            item = todo.pop(0)
            if isinstance(item, (list, tuple)):
                todo[:0] = list(item)
            elif all(item is not seen for seen in layers):
                layers.append(item)
        nodes = [node for layer in layers for node in layer._inbound_nodes]

        def created(node):
            tail = node.outputs[0].name.rsplit("_", 1)[-1]
            return int(tail) if tail.isdigit() else 0

        return sorted(nodes, key=created) if len(nodes) > len(layers) else nodes

    def _inputs(self, arrays: dict) -> dict:
        """The batch under KerasHub's names, int32; an input the batch lacks filled as transformers fills it."""
        import numpy as np

        unknown = sorted(set(arrays) - set(INPUTS))
        if unknown:
            raise FrameworkError(f"{type(self.backbone).__name__} has no input for {', '.join(unknown)}",
                                 "check this model with the other frameworks only")
        ids = np.asarray(arrays["input_ids"])
        back = {v: k for k, v in INPUTS.items()}
        out = {}
        for name in self.backbone.input:
            given = arrays.get(back.get(name, ""))
            fill = np.ones_like(ids) if DEFAULTS.get(name) == "ones" else np.zeros_like(ids)
            out[name] = np.asarray(given if given is not None else fill).astype("int32")
        return out

    def input_names(self) -> set:
        back = {v: k for k, v in INPUTS.items()}
        return {back[name] for name in self.backbone.input if name in back}

    def _run_impl(self, arrays: dict) -> dict:
        from parity.contracts.outputs import flatten

        import keras
        import numpy as np

        inputs = self._inputs(arrays)
        found = self.features(inputs, training=False)
        result = {}
        if self.task_model is not None:
            result["logits"] = self.task_model(inputs, training=False)
        else:
            result["last_hidden_state"] = found["sequence_output"]
            if "pooled_output" in found:
                result["pooler_output"] = found["pooled_output"]
        layers = len(self.calls)
        if self.spec.output_hidden_states:
            found[f"hidden_states.{layers}"] = found["sequence_output"]
            result["hidden_states"] = [found[f"hidden_states.{i}"] for i in range(layers + 1)]
        return flatten(result, lambda t: keras.ops.convert_to_numpy(t), np.float32)

    def _float_dtypes(self) -> set:
        return {str(v.dtype) for v in self.model.weights if "float" in str(v.dtype)}

    def _to_float32(self) -> None:
        """Loaded with dtype="float32": nothing to cast (a variable left in another dtype fails the check)."""

    def _weight_arrays(self):
        import keras

        for v in self.model.weights:
            yield v.path, keras.ops.convert_to_numpy(v)

    def export_weights(self) -> dict:
        """The loaded Keras variables under the checkpoint's names, in its layout (weights.py's contract).

        Each converter hook reshapes, transposes, slices or casts; run on a tensor of element indices
        (casts left out), it shows where every Keras element came from, which puts the Keras values
        back into the checkpoint's layout (a cast shows as the values it changed). A tensor is exported only when the hook, applied to that
        reconstruction, gives the Keras variable again exactly, and every element was filled
        (a hook doing arithmetic, or a tensor KerasHub reads in part, fails this: ``unfollowed``).
        """
        import keras
        import numpy as np

        from parity.worker.weights import strip_base_prefix

        _Positions = _positions_class()
        built, filled = {}, {}
        for variable, key, shape, hook in self.ported:
            value = np.asarray(keras.ops.convert_to_numpy(variable))
            shape = shape or value.shape
            if key not in built:
                built[key], filled[key] = np.zeros(shape, value.dtype), np.zeros(shape, bool)
            index = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape).view(_Positions)
            where = np.asarray(hook(index, list(value.shape)) if hook else index)
            if where.shape != value.shape or not np.array_equal(where, np.round(where)):
                filled[key][...] = False
                built[key] = None
                continue
            if built[key] is not None:
                built[key].reshape(-1)[where.astype(np.int64).reshape(-1)] = value.reshape(-1)
                filled[key].reshape(-1)[where.astype(np.int64).reshape(-1)] = True
        out, self.unfollowed = {}, []
        for key, tensor in built.items():
            ok = tensor is not None and filled[key].all() and all(
                np.array_equal(np.asarray(h(tensor, list(v.shape)) if h else tensor), keras.ops.convert_to_numpy(v))
                for v, k, _, h in self.ported if k == key)
            if ok:
                out[key] = tensor
            else:
                self.unfollowed.append(key)
        if self.unfollowed and self.report is not None:
            named = ", ".join(self.unfollowed[:3]) + (f" and {len(self.unfollowed) - 3} more" if len(self.unfollowed) > 3
                                                      else "")
            self.report.notes.append(f"weights export: {len(self.unfollowed)} checkpoint tensor(s) cannot be followed "
                                     f"back from KerasHub's variables ({named}): the converter's hook does arithmetic "
                                     "on them or reads part of them; the weights check counts them missing")
        prefix = {k.split(".", 1)[0] for k in out}
        return strip_base_prefix(out, prefix.pop() if len(prefix) == 1 else None)


class KerasJaxRunner(KerasRunner):
    descriptor = KERAS_JAX


class KerasTFRunner(KerasRunner):
    descriptor = KERAS_TF


class KerasTorchRunner(KerasRunner):
    descriptor = KERAS_TORCH


def _dtype(options) -> dict:
    """from_preset's dtype for the key's loading variant: float32 unless asked (``auto``: none passed)."""
    from parity.contracts import variants

    dtype = variants.dtype(options)
    return {} if dtype == "auto" else {"dtype": dtype or "float32"}
