"""What the parent asks of a worker and what the worker answers, as typed objects.

A worker process reads a WorkerRequest from a JSON file and writes a
WorkerReport to another (``python -m parity.worker request.json``); inline mode
hands the same objects to the same serve loop in this process
(parity.worker.serve). Outputs travel as npz files (``out``, and beside it
``<framework>.f64.npz`` for the float64 oracle) or, in-process, in the report's
``arrays``; the JSON never holds arrays.

On disk: request keys whose value is None are left out (before these classes
the run request wrote ``"explain": null`` and the conversion request
``"batch": null``); ``batch_timeout`` is written. The report's JSON is what the
worker wrote before: framework, status, error, load, seconds and outputs (the
output names) always, traceback, explain, imported and compile_cache when set.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Mapping

# Raised whenever a request or report changes shape: a worker in another environment
# (parity.planning.environments) must speak the same protocol, and the probe refuses one that does not.
VERSION = 4  # 4: LoadSpec.options (loading variants, pt@v5:bf16)


@dataclass
class LoadSpec:
    """What a worker needs to load one framework's model; JSON-serialisable."""

    path: str
    task: str
    class_name: str
    weights: str
    converted_from: str | None = None
    via: str | None = None
    device: str = "auto"
    output_hidden_states: bool = True
    output_attentions: bool = True
    cache_hit: str | None = None     # conversion-cache entry to load natively instead of converting
    cache_store: str | None = None   # where to keep this conversion for the next run
    trust_remote_code: bool = False
    compile_cache: str | None = None  # JAX's persistent compilation cache folder (Flax only)
    weights_dtype: str | None = None  # the floating dtypes the weights file stores (preflight.weights_dtype)
    bridged: str | None = None       # TF <-> Flax: PyTorch weights a kept PyTorch worker made from the source
    options: list = field(default_factory=list)  # the key's loading variant: auto, fp32, bf16, ... (contracts.variants)


@dataclass
class LoadReport:
    """Which file was loaded and how, and what the loader said about the weights."""

    class_name: str
    weights: str
    converted_from: str | None
    via: str | None = None
    device: str = "cpu"
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    cache: str | None = None         # hit | stored | None (no conversion, or cache off)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)  # loader options that change numbers: dtype, attn_implementation

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WorkerRequest:
    framework: str
    spec: LoadSpec
    batch: str | None = None          # npz the parent writes once built; None: no batch (or given in-process)
    out: str | None = None            # npz for the outputs; None: kept in the report only
    report: str | None = None         # where the worker process writes its WorkerReport
    explain: dict | None = None       # {"float64": bool}: run the --explain probes (parity.worker.probes)
    block_imports: list = field(default_factory=list)  # packages made unimportable first (worker.block_imports)
    loaded: str | None = None         # marker file touched once the model is loaded (the parent's progress)
    weights_out: str | None = None    # npz for the loaded weights (parity.worker.weights)
    save_to: str | None = None        # folder to save_pretrained the loaded model into (conversion)
    batch_timeout: float = 3600       # seconds a worker waits for the batch file
    python: str | None = None         # the interpreter of the worker process (parity.planning.environments); None: this one
    generate: dict | None = None      # --generate: task and parity's fixed settings (parity.worker.generation.run)
    pipeline: dict | None = None      # --pipeline: pipeline task, texts, settings (parity.worker.pipelines.run)
    tokenize: dict | None = None      # tokenizer parity: texts, max_length (parity.worker.tokenize.run)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["spec"] = asdict(self.spec)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> WorkerRequest:
        return cls(**{**data, "spec": LoadSpec(**data["spec"])})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> WorkerRequest:
        return cls.from_dict(json.loads(text))


# written only when set (as the worker wrote them before these classes)
_OPTIONAL = ("traceback", "explain", "imported", "compile_cache", "generation", "pipeline", "tokenizer")


@dataclass
class WorkerReport:
    framework: str
    status: str = "ok"                # ok | error | crashed (out of memory)
    error: str | None = None          # one line (worker.error_line)
    load: dict | None = None          # LoadReport.to_dict()
    seconds: dict = field(default_factory=dict)  # import, load, run, explain, total; cpu (worker process)
    outputs: list = field(default_factory=list)  # output names, in the model's order
    traceback: str | None = None
    explain: dict | None = None       # the --explain probes' findings
    imported: list | None = None      # frameworks the worker process imported (set by the process, not serve)
    compile_cache: dict | None = None  # Flax: XLA compilation cache hits and misses
    generation: dict | None = None    # --generate: config, reads, pad_token_id, ... or {"error": line}
    pipeline: dict | None = None      # --pipeline: the pipeline's inputs and outputs, or {"error": line}
    tokenizer: dict | None = None     # tokenizer parity: this side's ids and tokens per text, or {"error": line}
    # In-process only, never serialised: the outputs themselves and the float64 oracle's.
    arrays: Mapping | None = field(default=None, repr=False, compare=False)
    arrays64: Mapping | None = field(default=None, repr=False, compare=False)
    gen_arrays: Mapping | None = field(default=None, repr=False, compare=False)  # sequences, raw, processed

    def to_dict(self) -> dict:
        data = {"framework": self.framework, "status": self.status, "error": self.error, "load": self.load,
                "seconds": self.seconds, "outputs": list(self.outputs)}
        data.update((k, getattr(self, k)) for k in _OPTIONAL if getattr(self, k) is not None)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> WorkerReport:
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> WorkerReport:
        return cls.from_dict(json.loads(text))


def f64_path(out) -> Path:
    """Where a worker writes the float64 oracle's outputs: beside ``out`` (``<framework>.npz``)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.f64.npz")


def gen_path(out) -> Path:
    """Where a worker writes its --generate arrays (sequences, raw, processed): beside ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.gen.npz")
