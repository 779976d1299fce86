"""TensorFlow runner: TFAutoModel classes (tf-keras), TF32 off, memory growth on."""

from __future__ import annotations

import contextlib
import os

from ..errors import FrameworkError
from ..outputs import flatten
from . import bridge, tf_reads_pt_safetensors
from .base import LoadReport, Runner, call_flags


class _KeyedSafeOpen:
    """A safe_open handle that iterates over its keys, as transformers 4.57's TF reader expects."""

    def __init__(self, *args, **kwargs):
        from safetensors import safe_open

        self._handle = safe_open(*args, **kwargs)

    def __enter__(self):
        self._handle.__enter__()
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)

    def __iter__(self):
        return iter(self._handle.keys())

    def __getattr__(self, name):
        return getattr(self._handle, name)


@contextlib.contextmanager
def _iterable_safe_open(active: bool):
    """While loading PyTorch safetensors natively: transformers' TF loader runs
    ``for key in safe_open(...)``, which fails on safetensors 0.6 ("'builtins.safe_open'
    object is not iterable"); every other use of the handle is passed through."""
    if not active:
        yield
        return
    import transformers.modeling_tf_utils as tf_utils

    original = tf_utils.safe_open
    tf_utils.safe_open = _KeyedSafeOpen
    try:
        yield
    finally:
        tf_utils.safe_open = original


@contextlib.contextmanager
def zeros_init(created: list):
    """Keras variables made meanwhile start as zeros, not as their random init.

    transformers' TF from_pretrained builds the model (every add_weight draws its
    initializer: truncated normals, 0.4 of MiniLM's 1 s load here, seconds for
    bert-base) and then overwrites each weight from the file. Variables whose own
    initializer is not zeros are appended to ``created``, so the caller can see
    that the load overwrote every one of them (see TFRunner._load_without_init).
    Without tf-keras' make_variable (another version) nothing changes.
    """
    import inspect

    try:
        import tf_keras
        from tf_keras.src.engine import base_layer_utils
    except ImportError:
        yield
        return
    original = base_layer_utils.make_variable
    signature = inspect.signature(original)
    zeros = tf_keras.initializers.Zeros()

    def make_variable(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        own = bound.arguments.get("initializer")
        if own is not None:
            bound.arguments["initializer"] = zeros
        variable = original(*bound.args, **bound.kwargs)
        if own is not None and type(own).__name__ != "Zeros":
            created.append(variable)
        return variable

    base_layer_utils.make_variable = make_variable
    try:
        yield
    finally:
        base_layer_utils.make_variable = original


class TFRunner(Runner):
    framework = "tf"
    requires = ("tensorflow", "tf_keras")
    skipped_init = False  # built with zeros_init, every weight then loaded

    def _import_impl(self) -> None:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF classes need Keras 2
        super()._import_impl()

    def _load_impl(self) -> LoadReport:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf
        import transformers

        gpus = tf.config.list_physical_devices("GPU")
        if self.spec.device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.experimental.enable_tensor_float_32_execution(False)
        if self.spec.device == "gpu" and not gpus:
            raise FrameworkError("--device gpu but TensorFlow sees no GPU", "pass --device auto or cpu")
        self.device = "/GPU:0" if gpus else "/CPU:0"

        cls = getattr(transformers, self.spec.class_name)
        path, tmp = self.spec.path, None
        kwargs = {"output_loading_info": True, "trust_remote_code": self.spec.trust_remote_code}
        if self.spec.converted_from == "flax":
            tmp = bridge.via_pytorch(path, self.spec.class_name, self.spec.weights, "flax",
                                     self.spec.trust_remote_code)
            path, kwargs["from_pt"] = str(tmp), True
        elif self.spec.converted_from == "pt" and tf_reads_pt_safetensors(path, self.spec.weights):
            kwargs["use_safetensors"] = True  # transformers' own reader: no torch in this worker
        elif self.spec.converted_from == "pt":
            kwargs["from_pt"] = True
        else:
            # Native: read tf_model.h5, never model.safetensors (safetensors 0.8 breaks that path).
            kwargs["use_safetensors"] = False
        try:
            with tf.device(self.device), _iterable_safe_open(kwargs.get("use_safetensors") is True):
                model, info = self._load_without_init(cls, path, kwargs)
                if model is None:
                    model, info = cls.from_pretrained(path, **kwargs)
        finally:
            bridge.cleanup(tmp)
        self.model = model
        report = self._report("gpu:0" if gpus else "cpu", info)
        if kwargs.get("use_safetensors"):
            report.notes.append("PyTorch safetensors read by TF itself (safe_open framework='tf'), without torch; "
                                "transformers' reader iterates the safe_open handle, which safetensors no longer "
                                "allows, so parity hands it one that iterates its keys")
        if tmp is not None:
            report.notes.append(f"{self.spec.converted_from} weights converted to PyTorch weights first: "
                                f"transformers has no direct {self.spec.converted_from} -> {self.framework} path")
        self.flags = call_flags(model.call, {"output_hidden_states": self.spec.output_hidden_states,
                                             "output_attentions": self.spec.output_attentions,
                                             "return_dict": True, "training": False}, report.notes,
                                self.spec.class_name)
        return report

    def _load_without_init(self, cls, path, kwargs):
        """(model, loading info) built with zeros for weights the file then fills; (None, None) when the
        load left any weight unset (missing from the file): the ordinary load must initialise those.
        Where zeros_init could not take hold, the one load done is the ordinary one and is kept."""
        import tensorflow as tf

        created = []
        with zeros_init(created):
            model, info = cls.from_pretrained(path, **kwargs)
        if not created:  # nothing was zeroed (another tf-keras): that was the ordinary load
            return model, info
        if info.get("missing_keys") or any(not bool(tf.reduce_any(tf.not_equal(v, 0))) for v in created):
            return None, None
        self.skipped_init = True
        return model, info

    def _forward(self):
        return self.model.call

    def _export_impl(self) -> dict:
        # transformers' own TF -> PyTorch name rule, which also says how to undo the layout.
        from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

        from ..weights import tf_to_pt_layout

        out = {}
        for w in self.model.trainable_weights + self.model.non_trainable_weights:
            name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape)
            out[name] = tf_to_pt_layout(w.numpy(), transpose.name)
        return out

    def _run_impl(self, arrays: dict) -> dict:
        import tensorflow as tf

        with tf.device(self.device):
            out = self.model(dict(arrays), **self.flags)
        return flatten(dict(out.items()), lambda t: t.numpy())
