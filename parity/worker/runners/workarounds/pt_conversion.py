"""PyTorch from TF or Flax weights: built with real tensors, loaded with transformers' own functions.

Defects, seen with transformers 4.57.6:
- ``from_pretrained(from_tf=True / from_flax=True)`` builds the model on the meta
  device and then ``load_state_dict()``s into meta tensors: every parameter stays
  on meta, no weight is loaded. parity builds the model with real tensors and
  calls the same library converters, and says so in the load report.
- The TF -> PyTorch converter walks ``named_parameters()`` only, so a buffer that
  TF stores as a weight (BART's ``final_logits_bias``) keeps its initial zeros;
  parity copies such buffers by the same name rule.
- Tied weights (lm_head <- embeddings) are absent from TF / Flax files by design,
  yet the converters list them as missing although ``tie_weights()`` fills them.
"""

from __future__ import annotations

from pathlib import Path

from parity.contracts.errors import FrameworkError
from parity.worker.runners.load_log import LoadLogCapture


# transformers 4.57 builds the model on the meta device and its from_tf / from_flax
# paths then load_state_dict() into meta tensors: every parameter stays on meta,
# no weight is loaded. parity converts with the same library functions into a
# model built with real tensors instead, and says so in the load report.
META_NOTE = ("transformers' from_pretrained(from_{src}=True) leaves every parameter on the meta device in this "
             "version; converted with {func} into a materialised model instead")


BUFFER_NOTE = ("transformers' TF -> PyTorch converter loads parameters only, so buffers that TF stores as "
               "weights stay at their initial value; parity copied them from the TF weights: {names}")


def _load_tf_weights(model, file: str):
    """transformers' load_tf2_checkpoint_in_pytorch_model, plus persistent buffers.

    Its converter walks ``named_parameters()`` only: a buffer that TF keeps as a
    weight (BART's ``final_logits_bias``) keeps its initial zeros and the logits
    shift. The TF model is built and loaded as transformers does it, then the
    parameters go through transformers' own function and the buffers through
    the same name rule. Returns (model, loading info, names of copied buffers).
    """
    import torch
    import transformers
    from transformers.modeling_tf_pytorch_utils import (convert_tf_weight_name_to_pt_weight_name,
                                                        load_tf2_state_dict_in_pytorch_model)
    from transformers.modeling_tf_utils import load_tf_weights

    from parity.worker.weights import tf_to_pt_layout

    tf_model = getattr(transformers, "TF" + type(model).__name__)(model.config)
    tf_model(tf_model.dummy_inputs, training=False)  # build the variables
    load_tf_weights(tf_model, file)
    tf_state = {w.name: w.numpy() for w in tf_model.weights}
    model, info = load_tf2_state_dict_in_pytorch_model(model, tf_state, allow_missing_keys=True,
                                                       output_loading_info=True)
    params = dict(model.named_parameters())
    prefix = "" if any(n.startswith(model.base_model_prefix) for n in params) else model.base_model_prefix + "."
    by_pt_name = {}
    for name, arr in tf_state.items():
        pt_name, transpose = convert_tf_weight_name_to_pt_weight_name(name, start_prefix_to_remove=prefix,
                                                                      tf_weight_shape=arr.shape)
        by_pt_name[pt_name] = (arr, transpose.name)
    copied = []
    for name, buf in model.state_dict().items():
        if name in params or name not in by_pt_name:
            continue
        arr = tf_to_pt_layout(*by_pt_name[name])
        if tuple(arr.shape) == tuple(buf.shape):
            with torch.no_grad():
                buf.copy_(torch.from_numpy(arr).to(buf.dtype))
            copied.append(name)
    info["missing_keys"] = _untied_missing(model, info.get("missing_keys", []))
    return model, info, copied


def _untied_missing(model, missing: list) -> list:
    """Drop missing names that are tied to a loaded parameter (lm_head <- shared embeddings): TF stores
    a tied tensor once, so the converter never names the other end, yet its values are loaded."""
    missing_set = set(missing)
    by_storage: dict = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_storage.setdefault(p.data_ptr(), []).append(name)
    loaded_through_tie = {n for names in by_storage.values() if any(m not in missing_set for m in names)
                          for n in names}
    return [k for k in missing if k not in loaded_through_tie]


def convert_to_pt(cls, path: str, weights: str, source: str, trust_remote_code: bool = False, **init_kwargs):
    """Build ``cls`` from the config with real tensors and load TF or Flax weights into it.

    Returns (model, loading_info dict, note).
    """
    from transformers import AutoConfig

    if weights.endswith(".index.json"):
        raise FrameworkError(f"converting sharded {source} weights ({weights}) to PyTorch is not supported",
                             "pass --source with unsharded weights, or save the checkpoint unsharded")
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = cls._from_config(config, **init_kwargs)
    file = str(Path(path) / weights)
    if source == "tf":
        model, info, buffers = _load_tf_weights(model, file)
        func = "load_tf2_state_dict_in_pytorch_model"
        if buffers:
            note = (META_NOTE.format(src=source, func=func) + "; " + BUFFER_NOTE.format(names=", ".join(buffers)))
            return model, info, note
    else:
        from transformers.modeling_flax_pytorch_utils import load_flax_checkpoint_in_pytorch_model

        with LoadLogCapture("transformers.modeling_flax_pytorch_utils") as capture:
            model = load_flax_checkpoint_in_pytorch_model(model, file)
        info = capture.info
        func = "load_flax_checkpoint_in_pytorch_model"
    # Tied weights (shared embeddings, LM heads) are absent from TF/Flax files by design; the
    # converter lists them as missing although tie_weights() fills them.
    model.tie_weights()
    tied = {f"{name}.{key}" if name else key for name, module in model.named_modules()
            for key in (getattr(module, "_tied_weights_keys", None) or [])}
    if tied and info.get("missing_keys"):
        info = dict(info, missing_keys=[k for k in info["missing_keys"] if k not in tied])
    return model, info, META_NOTE.format(src=source, func=func)
