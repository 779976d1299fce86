"""TensorFlow runner: TFAutoModel classes (tf-keras), TF32 off, memory growth on."""

from __future__ import annotations

import os

from parity.contracts.protocol import LoadReport
from parity.worker.runners.base import Runner
from parity.contracts.frameworks.tf import DESCRIPTOR
from parity.worker.runners.workarounds import keyed_safe_open
from parity.worker.runners.workarounds.keyed_safe_open import iterable_safe_open
from parity.contracts.worker_imports import tf_reads_pt_safetensors
from parity.worker.runners.workarounds.zeros_init import load_zero_initialised



class TFRunner(Runner):
    descriptor = DESCRIPTOR
    skipped_init = False  # built with zeros_init, every weight then loaded

    def _import_impl(self) -> None:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF classes need Keras 2
        super()._import_impl()

    @classmethod
    def release(cls) -> None:
        # Keras keeps every layer of every model built in its global graph state, and numbers layer
        # names from it; cleared, the next model is built as in a fresh process.
        import tf_keras

        tf_keras.backend.clear_session()

    def _load_impl(self) -> LoadReport:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf
        import transformers

        gpus = tf.config.list_physical_devices("GPU")
        if self.spec.device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # a kept worker's second model (parity.execution.pool): set at its first, the GPU started
                pass
        tf.config.experimental.enable_tensor_float_32_execution(False)
        self._require_gpu(bool(gpus), "TensorFlow")
        self.device = "/GPU:0" if gpus else "/CPU:0"

        cls = getattr(transformers, self.spec.class_name)
        notes = []
        with self._weights_source(notes) as (path, source):
            kwargs = self._source_kwargs(path, source)
            with tf.device(self.device), iterable_safe_open(kwargs.get("use_safetensors") is True):
                model, info, self.skipped_init = load_zero_initialised(cls, path, kwargs)
                if model is None:
                    model, info = cls.from_pretrained(path, **kwargs)
        self.model = model
        report = self._report("gpu:0" if gpus else "cpu", info)
        if kwargs.get("use_safetensors"):
            report.notes.append(keyed_safe_open.NOTE)
        report.notes += notes
        self.flags = self._flags(model.call, report.notes, training=False)
        return report

    def _source_kwargs(self, path: str, source: str | None) -> dict:
        kwargs = {"output_loading_info": True, "trust_remote_code": self.spec.trust_remote_code}
        bridged = bool(self.spec.bridged)  # executor._bridge's folder: PyTorch safetensors
        weights = "model.safetensors" if bridged else self.spec.weights
        if source == "pt" and (bridged or not self.spec.via) and tf_reads_pt_safetensors(path, weights):
            kwargs["use_safetensors"] = True  # transformers' own reader: no torch in this worker
        elif source == "pt":
            kwargs["from_pt"] = True
        else:
            # Native: read tf_model.h5, never model.safetensors (safetensors 0.8 breaks that path).
            kwargs["use_safetensors"] = False
        return kwargs

    def _forward(self):
        return self.model.call

    def _float_dtypes(self) -> set:
        return {w.dtype.name for w in self.model.weights if w.dtype.is_floating}

    def _to_float32(self) -> None:
        """Nothing to cast: the variables are built in Keras' default float32 and from_pretrained assigns the
        checkpoint's values into them (cast); Runner._check_weights fails the load if one is not."""

    def _weight_arrays(self):
        for w in self.model.weights:
            yield w.name, w.numpy()

    def _export_impl(self) -> dict:
        # transformers' own TF -> PyTorch name rule, which also says how to undo the layout.
        from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

        from parity.worker.weights import tf_to_pt_layout

        out = {}
        for w in self.model.trainable_weights + self.model.non_trainable_weights:
            name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape)
            out[name] = tf_to_pt_layout(w.numpy(), transpose.name)
        return out

    pipeline_framework = "tf"  # transformers.pipeline(framework=...)
    generate_module = "transformers.generation.tf_utils"

    def _generate_impl(self, prompt: dict, fixed: dict) -> tuple:
        import numpy as np
        import tensorflow as tf

        # TF's generate builds its own ids as int32 and concatenates them with the prompt's.
        prompt = {k: v.astype(np.int32) if np.issubdtype(v.dtype, np.integer) else v for k, v in prompt.items()}
        with tf.device(self.device):
            out = self.model.generate(**{k: tf.constant(v) for k, v in prompt.items()}, **fixed,
                                      return_dict_in_generate=True, output_scores=True)
        return out.sequences.numpy(), np.stack([s.numpy() for s in out.scores])

    def _run_impl(self, arrays: dict) -> dict:
        from parity.contracts.outputs import flatten  # numpy: kept out of the parent, which reads descriptors only

        import tensorflow as tf

        with tf.device(self.device):
            out = self.model(dict(arrays), **self.flags)
        return flatten(dict(out.items()), lambda t: t.numpy())
