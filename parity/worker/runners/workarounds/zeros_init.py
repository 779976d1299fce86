"""TF models built with zeros instead of the random init that the loaded weights replace at once.

Not a defect but a cost of transformers 4.57's TF ``from_pretrained``: it builds
the model (every ``add_weight`` draws its initializer: truncated normals, 0.4 s of
MiniLM's 1 s load on 2 cores, seconds for bert-base) and then overwrites each
weight from the file. While tf-keras' ``make_variable`` is wrapped, variables start
as zeros; afterwards ``load_zero_initialised`` checks that the file overwrote
every variable whose own initializer is not zeros, and falls back to the ordinary
load when one was left unset (missing from the file, or ignored by transformers).
Seen with tf-keras 2.20.1; without its make_variable nothing changes.
"""

from __future__ import annotations

import contextlib
import inspect


@contextlib.contextmanager
def zeros_init(created: list):
    """Keras variables made meanwhile start as zeros; those whose initializer is not zeros go to ``created``."""
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


def load_zero_initialised(cls, path, kwargs):
    """(model, loading info, skipped_init): ``cls.from_pretrained`` built with zeros.

    (None, None, False) when the load left any weight unset: the ordinary load must
    initialise those. Where zeros_init could not take hold, the one load done is the
    ordinary one and is kept (skipped_init False).
    """
    import tensorflow as tf

    created = []
    with zeros_init(created):
        model, info = cls.from_pretrained(path, **kwargs)
    if not created:  # nothing was zeroed (another tf-keras): that was the ordinary load
        return model, info, False
    if info.get("missing_keys") or any(not bool(tf.reduce_any(tf.not_equal(v, 0))) for v in created):
        return None, None, False
    return model, info, True
