"""Cap the math libraries to an older instruction set and show that each cap took effect.

    python tests/isa_caps.py AVX2            # what each library runs with the AVX2 caps, and without
    eval "$(python tests/isa_caps.py AVX2 --env)"; make test    # the suite under the caps

Tests must hold whichever kernels ran (issue 15): they assert parity's verdicts, never a bound tighter than
them. The caps change the kernels on a machine wider than the cap (AVX-512 and AMX here), so a run under them
finds tests that depend on the ISA. Each probe below runs in a fresh interpreter and prints what the library
itself reports. Names are those of torch 2.13, TensorFlow 2.20, jaxlib 0.6 and numpy 2.4.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CAPS = {
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "XLA_FLAGS": "--xla_cpu_max_isa=AVX2", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    # oneMKL 2024 has no AVX-only code path (asked for AVX it runs SSE4.2): capped to SSE4_2 explicitly.
    "AVX": {"ONEDNN_MAX_CPU_ISA": "AVX", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default",
            "XLA_FLAGS": "--xla_cpu_max_isa=AVX",
            "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"},
}

TORCH = """import torch
torch.nn.functional.conv2d(torch.randn(2, 3, 16, 16), torch.randn(4, 3, 3, 3))
torch.randn(512, 512) @ torch.randn(512, 512)
print(torch.__config__.show())"""
TF = """import tensorflow as tf
tf.nn.conv2d(tf.random.normal((2, 16, 16, 3)), tf.random.normal((3, 3, 3, 4)), 1, "VALID")"""
JAX = """import jax, jax.numpy as jnp
jax.jit(lambda a: jnp.tanh(a @ a).sum())(jnp.ones((64, 64), jnp.float32)).block_until_ready()"""
NUMPY = """from numpy._core._multiarray_umath import __cpu_features__ as f
wide = [k for k in ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR") if f.get(k)]
print("numpy dispatch beyond the X86_V2 baseline:", " ".join(wide) or "none")"""


ONEDNN_ISA = r"onednn_verbose,.*?cpu,isa:([^\n]*)"
MKL_ISA = r"MKL_VERBOSE oneMKL[^\n]*? 64 architecture [^\n]*?\((Intel\(R\) (?:AVX|SSE)[^)]*)\)"
ATEN_ISA = r"CPU capability usage: ([^\n]*)"


def _run(code: str, env: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600)
    return proc.stdout + proc.stderr


def _first(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1).strip() if m else "(not reported)"


def probe(cap: dict) -> list[str]:
    """One line per library: the instruction set it reports under ``cap`` (an empty dict: full width)."""
    verbose = {"ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    t, tf = _run(TORCH, {**cap, **verbose}), _run(TF, {**cap, **verbose})
    lines = [f"torch oneDNN: {_first(ONEDNN_ISA, t)}; convolution kernel {_first(r'convolution,(jit:[a-z0-9_]+)', t)}",
             f"torch MKL: {_first(MKL_ISA, t)}",
             f"torch ATen: {_first(ATEN_ISA, t)}",
             f"tensorflow oneDNN: {_first(ONEDNN_ISA, tf)}"]
    with tempfile.TemporaryDirectory() as dump:
        flags = f"{cap.get('XLA_FLAGS', '')} --xla_dump_to={dump}".strip()
        _run(JAX, {**cap, "XLA_FLAGS": flags})
        objs = list(Path(dump).glob("*.o"))
        zmm = sum(subprocess.run(["objdump", "-d", str(o)], capture_output=True, text=True).stdout.count("%zmm")
                  for o in objs)
        lines.append(f"jax XLA: {len(objs)} compiled kernels use 512-bit zmm registers {zmm} times")
    lines.append(_run(NUMPY, cap).strip())
    return lines


def main(argv: list[str]) -> int:
    name = argv[0] if argv else "AVX2"
    cap = CAPS[name]
    if "--env" in argv:
        print("\n".join(f"export {k}='{v}'" for k, v in cap.items()))
        return 0
    for label, env in ((f"capped to {name}", cap), ("full width", {})):
        print(f"== {label}")
        print("\n".join(f"  {line}" for line in probe(env)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
