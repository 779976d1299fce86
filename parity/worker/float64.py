"""The float64 oracle's run of a PyTorch model without a float64 copy of the whole model.

``model.double()`` holds every weight in float64: twice the float32 model, on top of what the worker
already holds (a 1.1B-parameter Llama: 8.8 GB more). Instead each module that owns weights or buffers is
cast to float64 just before its forward and back just after (a forward pre-hook and a hook): the
activations flow in float64 from the embeddings on, and at most one module's weights are float64 at a
time. float32 -> float64 -> float32 is exact, so the model is left as it was loaded. A model that reads a
weight outside its owner's forward (the cast has not happened there) fails with a dtype error; the
runner then falls back to casting the whole model (``whole``).
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def module_by_module(model):
    """Within the block, every module with its own floating tensors runs in float64 for its own forward."""
    import torch

    handles, kept = [], {}  # kept: per module, its tensors that were float64 before (left so after)

    def up(module, args):
        kept[id(module)] = {n for n, t in _own(module) if t.dtype == torch.float64}
        _cast(module, torch.float64)

    def down(module, args, out):
        _cast(module, torch.float32, keep=kept.pop(id(module), set()))

    for module in model.modules():
        if any(t.is_floating_point() for _, t in _own(module)):
            handles.append(module.register_forward_pre_hook(up))
            handles.append(module.register_forward_hook(down))
    try:
        yield
    except BaseException:
        model.float()  # a forward that raised left some module cast: float32 again, exactly
        raise
    finally:
        for h in handles:
            h.remove()


def _cast(module, dtype, keep=()) -> None:
    """The module's own floating parameters (in place: a tied weight stays one tensor) and buffers to ``dtype``."""
    for name, p in module.named_parameters(recurse=False):
        if p.is_floating_point() and name not in keep:
            p.data = p.data.to(dtype)
    for name, b in list(module.named_buffers(recurse=False)):
        if b.is_floating_point() and name not in keep:
            module._buffers[name] = b.to(dtype)


def _own(module):
    yield from module.named_parameters(recurse=False)
    yield from module.named_buffers(recurse=False)
