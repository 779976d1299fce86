"""The float64 oracle's run of a PyTorch model without a float64 copy of the whole model.

``model.double()`` holds every weight in float64: twice the float32 model, on top of what the worker
already holds (a 1.1B-parameter Llama: 8.8 GB more). Instead each module that owns weights or buffers is
cast to float64 just before its forward and back just after (a forward pre-hook and a hook): the
activations flow in float64 from the embeddings on, and at most one module's weights are float64 at a
time. The float32 tensors are put back as they were (not cast back: no new copy of weights that may be
memory-mapped from the checkpoint), so the model is left exactly as it was loaded. A model that reads a
weight outside its owner's forward (the cast has not happened there) fails with a dtype error; the
runner then falls back to casting the whole model (``whole``).
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def module_by_module(model):
    """Within the block, every module with its own floating tensors runs in float64 for its own forward."""
    import torch

    handles, saved = [], {}  # per module: its own float32 tensors, put back as they were (no new copy)

    def up(module, args):
        saved[id(module)] = _swap(module, lambda t: t.to(torch.float64))

    def down(module, args, out):
        _restore(module, saved.pop(id(module), {}))

    for module in model.modules():
        if any(t.is_floating_point() for _, t in _own(module)):
            handles.append(module.register_forward_pre_hook(up))
            handles.append(module.register_forward_hook(down))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for module in model.modules():  # a forward that raised left some modules cast
            _restore(module, saved.pop(id(module), {}))


def _swap(module, cast) -> dict:
    """The module's own floating float32 parameters (their data in place: a tied weight stays one tensor) and
    buffers replaced by ``cast`` of them; returns the originals."""
    import torch

    originals = {}
    for name, p in module.named_parameters(recurse=False):
        if p.dtype == torch.float32:
            originals[("p", name)] = p.data
            p.data = cast(p.data)
    for name, b in list(module.named_buffers(recurse=False)):
        if b.dtype == torch.float32:
            originals[("b", name)] = b
            module._buffers[name] = cast(b)
    return originals


def _restore(module, originals: dict) -> None:
    params = dict(module.named_parameters(recurse=False))
    for (kind, name), tensor in originals.items():
        if kind == "p":
            params[name].data = tensor
        else:
            module._buffers[name] = tensor


def _own(module):
    yield from module.named_parameters(recurse=False)
    yield from module.named_buffers(recurse=False)
