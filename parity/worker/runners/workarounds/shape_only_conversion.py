"""Flax ``from_pretrained(from_pt=True, _do_init=False)``: hand the converter the model's shape tree.

Defect: transformers 4.57's PyTorch -> Flax loader passes the model itself to
``load_pytorch_checkpoint_in_flax_state_dict``, whose converter reads
``model.params`` only for names and shapes; a model built with ``_do_init=False``
raises there, so every from_pt load paid a random init (about 2 s of a MiniLM
load on 2 cores) whose values were thrown away. Seen with transformers 4.57.6.
The converted arrays are the same (tested bit for bit against the ordinary load).
Where the loader is not found (another version) nothing changes, and such a load
fails as before, into the ordinary load.
"""

from __future__ import annotations

import contextlib

from parity.worker.runners.lazy_tensors import LazyTensors, streamable


class ShapeView:
    """What the converter reads from a model: its param tree (as ShapeDtypeStructs) and prefix."""

    def __init__(self, model):
        self.params = model.params_shape_tree
        self.base_model_prefix = model.base_model_prefix


@contextlib.contextmanager
def shape_only_conversion():
    import transformers.modeling_flax_utils as flax_utils
    from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax

    original = getattr(flax_utils, "load_pytorch_checkpoint_in_flax_state_dict", None)
    if original is None:
        yield
        return

    def load(model, path, is_sharded, *args, **kwargs):
        view = ShapeView(model) if not model._is_initialized else model
        if not is_sharded and streamable(path):  # one tensor read at a time (parity.worker.runners.lazy_tensors)
            return convert_pytorch_state_dict_to_flax(LazyTensors(path), view)
        return original(view, path, is_sharded, *args, **kwargs)

    flax_utils.load_pytorch_checkpoint_in_flax_state_dict = load
    try:
        yield
    finally:
        flax_utils.load_pytorch_checkpoint_in_flax_state_dict = original
