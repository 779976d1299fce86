"""PyTorch's facts (its runner: parity/worker/runners/torch.py)."""

from __future__ import annotations

from parity.contracts.descriptor import Framework

DESCRIPTOR = Framework(
    key="pt", label="PyTorch", runner="torch:TorchRunner", aliases=("torch", "pytorch"),
    requires=("torch",), extra="torch", main_module="torch", packages=("torch",), shown_versions=("torch",),
    import_names=("torch",),
    weight_files=("model.safetensors", "model.safetensors.index.json",
                  "pytorch_model.bin", "pytorch_model.bin.index.json"),
    native_file="model.safetensors", class_prefix="", auto_module="modeling_auto", auto_prefix="",
    use_env=("USE_TORCH",), converts_from=("tf", "flax"),
    warm_imports=("transformers", "transformers.modeling_utils"),
    # 1.1B Llama: the safetensors file memory-mapped (its pages resident once the model ran), the float64
    # oracle one module at a time (docs/benchmarks.md)
    load_factor=1.5,
    idle_bytes=400 << 20,  # measured ~0.3 GB after imports, tiny model loaded (2-core CPU machine, pinned stack)
    float64_oracle=True,
    load_options=("auto", "fp32", "bf16", "fp16", "eager", "sdpa"),  # from_pretrained(dtype=, attn_implementation=)
)
