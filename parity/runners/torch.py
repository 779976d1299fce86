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
    t = t.detach()
    if t.is_floating_point():
        t = t.float()
    return t.cpu().numpy()


def convert_to_pt(cls, path: str, weights: str, source: str, **init_kwargs):
    """Build ``cls`` from the config with real tensors and load TF or Flax weights into it.

    Returns (model, loading_info dict, note).
    """
    from transformers import AutoConfig

    if weights.endswith(".index.json"):
        raise FrameworkError(f"converting sharded {source} weights ({weights}) to PyTorch is not supported",
                             "pass --source with unsharded weights, or save the checkpoint unsharded")
    config = AutoConfig.from_pretrained(path)
    model = cls._from_config(config, **init_kwargs)
    file = str(Path(path) / weights)
    if source == "tf":
        from transformers.modeling_tf_pytorch_utils import load_tf2_checkpoint_in_pytorch_model

        model, info = load_tf2_checkpoint_in_pytorch_model(model, file, allow_missing_keys=True,
                                                           output_loading_info=True)
        func = "load_tf2_checkpoint_in_pytorch_model"
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
            model, info, note = convert_to_pt(cls, self.spec.path, self.spec.weights, self.spec.converted_from, **init)
            notes.append(note)
        else:
            # Route explicitly to the file the plan names.
            model, info = cls.from_pretrained(self.spec.path, output_loading_info=True,
                                              use_safetensors=self.spec.weights.startswith("model.safetensors"),
                                              **init)
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

    def _run_impl(self, arrays: dict) -> dict:
        import torch

        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with torch.no_grad():
            out = self.model(**inputs, **self.flags)
        items = {}
        for key, value in out.items():
            if hasattr(value, "to_legacy_cache"):  # DynamicCache -> nested tuples
                value = value.to_legacy_cache()
            items[key] = value
        return flatten(items, _to_numpy)
