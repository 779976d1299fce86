"""TF reads PyTorch safetensors itself: a safe_open handle that iterates its keys.

Defect: transformers 4.57's TF loader (``modeling_tf_utils``) runs
``for key in safe_open(...)`` on a model.safetensors saved by PyTorch; safetensors
0.6 handles are not iterable ("'builtins.safe_open' object is not iterable"), and
0.8 broke TFAutoModel on such folders altogether. Seen with transformers 4.57.6 and
safetensors 0.6.2. Reading the file this way keeps torch out of a converting TF
worker (its import time and memory); the values are those of ``from_pt`` (tested).
"""

from __future__ import annotations

import contextlib


class KeyedSafeOpen:
    """A safe_open handle that iterates over its keys; every other use is passed through."""

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
def iterable_safe_open(active: bool):
    """While ``active``, transformers' TF loader opens safetensors through KeyedSafeOpen."""
    if not active:
        yield
        return
    import transformers.modeling_tf_utils as tf_utils

    original = tf_utils.safe_open
    tf_utils.safe_open = KeyedSafeOpen
    try:
        yield
    finally:
        tf_utils.safe_open = original




NOTE = ("PyTorch safetensors read by TF itself (safe_open framework='tf'), without torch; "
        "transformers' reader iterates the safe_open handle, which safetensors no longer "
        "allows, so parity hands it one that iterates its keys")
