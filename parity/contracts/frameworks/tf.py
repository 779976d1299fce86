"""TensorFlow's facts (its runner: parity/worker/runners/tf.py)."""

from __future__ import annotations

from parity.contracts.descriptor import Framework

DESCRIPTOR = Framework(
    key="tf", label="TensorFlow", runner="tf:TFRunner", aliases=("tensorflow",),
    requires=("tensorflow", "tf_keras"), extra="tf", main_module="tensorflow", packages=("tensorflow", "tf-keras"),
    shown_versions=("tensorflow",), import_names=("tensorflow", "tf_keras"),
    weight_files=("tf_model.h5", "tf_model.h5.index.json"),
    native_file="tf_model.h5", class_prefix="TF", auto_module="modeling_tf_auto", auto_prefix="TF_",
    use_env=("USE_TF",), converts_from=("pt",),
    warm_imports=("transformers", "transformers.modeling_tf_utils"),
    worker_env=(("TF_CPP_MIN_LOG_LEVEL", "2"),
                ("TF_USE_LEGACY_KERAS", "1")),  # transformers' TF classes need Keras 2 (tf-keras)
    idle_bytes=900 << 20,  # measured ~0.85 GB after imports, tiny model loaded
)
