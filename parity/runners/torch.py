"""PyTorch runner: AutoModel classes, TF32 off, no_grad, eval mode."""

from __future__ import annotations

from pathlib import Path

from ..errors import FrameworkError
from ..outputs import flatten
from .base import LoadLogCapture, LoadReport, Runner, call_flags

# transformers 4.57 builds the model on the meta device and its from_tf / from_flax
# paths then load_state_dict() into meta tensors: every parameter stays on meta,
# no weight is loaded. parity converts with the same library functions into a
# model built with real tensors instead, and says so in the load report.
META_NOTE = ("transformers' from_pretrained(from_{src}=True) leaves every parameter on the meta device in this "
             "version; converted with {func} into a materialised model instead")


def _to_numpy(t):
    return t.detach().cpu().numpy()


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

    from ..weights import tf_to_pt_layout

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


class TorchRunner(Runner):
    framework = "pt"
    requires = ("torch",)

    def _load_impl(self) -> LoadReport:
        import torch
        import transformers

        # Parity needs full float32 matmuls: TF32 would cost ~1e-3 relative on Ampere+.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        if self.spec.device == "gpu" and not torch.cuda.is_available():
            raise FrameworkError("--device gpu but torch sees no GPU", "pass --device auto or cpu")
        self.device = torch.device("cuda" if self.spec.device != "cpu" and torch.cuda.is_available() else "cpu")

        cls = getattr(transformers, self.spec.class_name)
        init = {"attn_implementation": "eager"} if self.spec.output_attentions else {}  # SDPA returns no maps
        notes = []
        if self.spec.converted_from in ("tf", "flax"):
            model, info, note = convert_to_pt(cls, self.spec.path, self.spec.weights, self.spec.converted_from,
                                              trust_remote_code=self.spec.trust_remote_code, **init)
            notes.append(note)
        else:
            # Route explicitly to the file the plan names.
            model, info = cls.from_pretrained(self.spec.path, output_loading_info=True,
                                              use_safetensors=self.spec.weights.startswith("model.safetensors"),
                                              trust_remote_code=self.spec.trust_remote_code, **init)
        on_meta = [n for n, p in model.named_parameters() if p.is_meta]
        if on_meta:
            raise FrameworkError(f"{len(on_meta)} parameters were never loaded (still on the meta device, "
                                 f"e.g. {on_meta[0]})", "report this with the transformers version in results.json")
        self.model = model.to(self.device).eval()
        report = self._report(str(self.device), info)
        report.notes = notes
        self.flags = call_flags(model.forward, {"output_hidden_states": self.spec.output_hidden_states,
                                                "output_attentions": self.spec.output_attentions,
                                                "return_dict": True}, report.notes, self.spec.class_name)
        return report

    def _export_impl(self) -> dict:
        # state_dict keeps persistent buffers (BART's final_logits_bias is a weight in TF/Flax);
        # a tensor tied to an earlier one (lm_head <- embeddings) is kept once, as TF and Flax store it.
        seen, out = set(), {}
        for name, t in self.model.state_dict().items():
            ptr = (t.data_ptr(), tuple(t.shape))
            if t.numel() and ptr in seen:
                continue
            seen.add(ptr)
            out[name] = _to_numpy(t.float() if t.is_floating_point() else t)
        return out

    def save(self, folder: str) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)

    def _forward(self):
        return self.model.forward

    def run_float64(self, arrays: dict) -> dict:
        """Upcast weights (the model stays float64 afterwards) and run: outputs kept as float64."""
        import numpy as np

        self.model.double()
        return self._run_impl(arrays, float_dtype=np.float64)

    def _run_impl(self, arrays: dict, float_dtype=None) -> dict:
        import numpy as np
        import torch

        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with torch.no_grad():
            out = self.model(**inputs, **self.flags)
        items = {}
        for key, value in out.items():
            if hasattr(value, "to_legacy_cache"):  # DynamicCache -> nested tuples
                value = value.to_legacy_cache()
            items[key] = value
        return flatten(items, _to_numpy, float_dtype or np.float32)
