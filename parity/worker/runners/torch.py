"""PyTorch runner: AutoModel classes, TF32 off, no_grad, eval mode."""

from __future__ import annotations

from parity.contracts.errors import FrameworkError
from parity.contracts.protocol import LoadReport
from parity.worker.runners.base import Runner
from parity.contracts.frameworks.torch import DESCRIPTOR
from parity.worker.runners.workarounds.pt_conversion import convert_to_pt



def _to_numpy(t):
    import torch

    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()  # numpy has no bfloat16


def _init(torch, version: str, spec) -> dict:
    """from_pretrained's dtype and attention arguments for the spec's loading variant (parity.contracts.variants).

    No variant: float32 (transformers 5 loads the checkpoint's own dtype, "auto"; parity compares float32
    everywhere) and eager attention whenever attentions are compared (SDPA returns no maps). ``auto``: neither
    argument, as ``from_pretrained(path)`` would load. The keyword is `dtype` from 4.56 on, `torch_dtype` before."""
    from parity.contracts import variants

    dtype, attn = variants.dtype(spec.options), variants.attention(spec.options)
    init = {}
    if attn is None and spec.output_attentions:
        init["attn_implementation"] = "eager"
    elif attn not in (None, "auto"):
        init["attn_implementation"] = attn
    if dtype != "auto":
        major, minor = (int(x) for x in version.split(".")[:2])
        init["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = getattr(torch, dtype or "float32")
    return init


class TorchRunner(Runner):
    descriptor = DESCRIPTOR

    def _load_impl(self) -> LoadReport:
        import torch
        import transformers

        # Parity needs full float32 matmuls: TF32 would cost ~1e-3 relative on Ampere+.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        self._require_gpu(torch.cuda.is_available(), "torch")
        self.device = torch.device("cuda" if self.spec.device != "cpu" and torch.cuda.is_available() else "cpu")

        cls = getattr(transformers, self.spec.class_name)
        init = _init(torch, transformers.__version__, self.spec)
        notes = []
        if self.spec.converted_from:  # from_tf / from_flax leave the model on meta: see pt_conversion
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
        report.settings = {"dtype": str(model.dtype).replace("torch.", ""),
                           "attn_implementation": getattr(model.config, "_attn_implementation", None)}
        self.flags = self._flags(model.forward, report.notes)
        return report

    def _unique_state(self):
        """state_dict keeps persistent buffers (BART's final_logits_bias is a weight in TF/Flax); a tensor
        tied to an earlier one (lm_head <- embeddings) is named once, as TF and Flax store it."""
        seen = set()
        for name, t in self.model.state_dict().items():
            ptr = (t.data_ptr(), tuple(t.shape))
            if t.numel() and ptr in seen:
                continue
            seen.add(ptr)
            yield name, t

    def _export_impl(self) -> dict:
        return {name: _to_numpy(t.float() if t.is_floating_point() else t) for name, t in self._unique_state()}

    def save(self, folder: str) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)

    pipeline_framework = "pt"  # transformers.pipeline(framework=...)
    generate_module = "transformers.generation.utils"

    def _generate_impl(self, prompt: dict, fixed: dict) -> tuple:
        import numpy as np
        import torch

        inputs = {k: torch.from_numpy(np.asarray(v)).to(self.device) for k, v in prompt.items()}
        with torch.no_grad():
            out = self.model.generate(**inputs, **fixed, return_dict_in_generate=True, output_scores=True)
        return _to_numpy(out.sequences), np.stack([_to_numpy(s.float()) for s in out.scores])

    def _float_dtypes(self) -> set:
        return {str(t.dtype).replace("torch.", "") for t in self.model.state_dict().values() if t.is_floating_point()}

    def _to_float32(self) -> None:
        self.model.float()  # transformers 4.57 loads float32 unless told a dtype; this keeps it so

    def _weight_arrays(self):
        for name, t in self._unique_state():
            yield name, _to_numpy(t)

    def _forward(self):
        return self.model.forward

    def run_float64(self, arrays: dict) -> dict:
        """The batch in float64, outputs kept as float64: module by module (parity.worker.float64), or, when
        the model reads a weight outside its owner's forward, the whole model upcast (it stays float64)."""
        import numpy as np

        from parity.worker.float64 import module_by_module

        try:
            with module_by_module(self.model):
                out = self._run_impl(arrays, float_dtype=np.float64)
            self.float64_mode = "module by module"
            return out
        except RuntimeError:  # a dtype mismatch: some weight is read outside its module's forward
            self.model.double()
            self.float64_mode = "whole model"
            return self._run_impl(arrays, float_dtype=np.float64)

    def _run_impl(self, arrays: dict, float_dtype=None) -> dict:
        from parity.contracts.outputs import flatten  # numpy: kept out of the parent, which reads descriptors only

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
