"""PyTorch runner: AutoModel classes, TF32 off, no_grad, eval mode."""

from __future__ import annotations

from ..errors import FrameworkError
from ..outputs import flatten
from .base import LoadReport, Runner


def _to_numpy(t):
    t = t.detach()
    if t.is_floating_point():
        t = t.float()
    return t.cpu().numpy()


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
        kwargs = {"output_loading_info": True}
        if self.spec.converted_from == "tf":
            kwargs["from_tf"] = True
        elif self.spec.converted_from == "flax":
            kwargs["from_flax"] = True
        else:
            # Route explicitly to the file the plan names.
            kwargs["use_safetensors"] = self.spec.weights.startswith("model.safetensors")
        if self.spec.output_attentions:
            kwargs["attn_implementation"] = "eager"  # SDPA cannot return attention maps
        loaded = cls.from_pretrained(self.spec.path, **kwargs)
        model, info = loaded if isinstance(loaded, tuple) else (loaded, {})
        self.model = model.to(self.device).eval()
        return self._report(str(self.device), info)

    def _run_impl(self, arrays: dict) -> dict:
        import torch

        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with torch.no_grad():
            out = self.model(**inputs, output_hidden_states=self.spec.output_hidden_states,
                             output_attentions=self.spec.output_attentions, return_dict=True)
        items = {}
        for key, value in out.items():
            if hasattr(value, "to_legacy_cache"):  # DynamicCache -> nested tuples
                value = value.to_legacy_cache()
            items[key] = value
        return flatten(items, _to_numpy)
