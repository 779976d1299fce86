"""Runner contract (after Polygraphy's runners): ``load()`` then ``run(arrays)``.

Each public method wraps an ``_impl`` that a framework module fills in, and
times it. Runner modules import their framework lazily, inside the methods,
so ``parity`` itself stays framework-free.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import re
import time
from dataclasses import asdict, dataclass, field


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
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class Runner:
    framework = ""
    # Packages that must be importable for this runner to be available.
    requires: tuple = ()

    def __init__(self, spec: LoadSpec):
        self.spec = spec
        self.model = None
        self.report: LoadReport | None = None
        self.run_seconds = 0.0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the framework can be imported; else why not (without importing it)."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        return f"{', '.join(missing)} not installed" if missing else None

    def load(self) -> LoadReport:
        t0 = time.perf_counter()
        self.report = self._load_impl()
        self.report.seconds = time.perf_counter() - t0
        return self.report

    def run(self, arrays: dict) -> dict:
        """Run the batch; return flattened float32 numpy outputs (see outputs.flatten)."""
        t0 = time.perf_counter()
        out = self._run_impl(arrays)
        self.run_seconds = time.perf_counter() - t0
        return out

    def _load_impl(self) -> LoadReport:
        raise NotImplementedError

    def _run_impl(self, arrays: dict) -> dict:
        raise NotImplementedError

    def _report(self, device: str, info: dict | None) -> LoadReport:
        info = info or {}
        return LoadReport(
            class_name=self.spec.class_name, weights=self.spec.weights,
            converted_from=self.spec.converted_from, via=self.spec.via, device=device,
            missing=sorted(_keyname(k) for k in info.get("missing_keys", [])),
            unexpected=sorted(_keyname(k) for k in info.get("unexpected_keys", [])),
            mismatched=sorted(_keyname(k[0]) if isinstance(k, (tuple, list)) else _keyname(k)
                              for k in info.get("mismatched_keys", [])),
        )


def call_flags(fn, wanted: dict, notes: list, class_name: str) -> dict:
    """Keep the flags ``fn`` accepts (ResNet has no attention maps, Flax OPT no ``train``);
    say in the load notes which were left out, so a missing output group is explained."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(wanted)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(wanted)
    kept = {k: v for k, v in wanted.items() if k in params}
    dropped = [k for k, v in wanted.items() if k not in params and v is True
               and k not in ("train", "training", "deterministic", "return_dict")]
    if dropped:
        notes.append(f"{class_name} takes no {', '.join(dropped)}: not requested")
    return kept


def _keyname(key) -> str:
    return "/".join(map(str, key)) if isinstance(key, (tuple, list)) else str(key)


def pt_twin(class_name: str) -> str:
    """TFBertModel / FlaxBertModel -> BertModel."""
    for prefix in ("TF", "Flax"):
        if class_name.startswith(prefix):
            return class_name[len(prefix):]
    return class_name


_LOGGED_SETS = {
    "unexpected_keys": re.compile(r"were not used when initializing[^:]*: ([\[{].*?[\]}])\n", re.S),
    "missing_keys": re.compile(r"newly\s+initialized: ([\[{].*?[\]}])\n", re.S),
}


class LoadLogCapture(logging.Handler):
    """Read missing / unexpected weights from transformers' load warnings.

    Flax's from_pretrained and the Flax->PyTorch converter have no
    output_loading_info; their warnings carry the same lists.
    """

    def __init__(self, *loggers: str):
        super().__init__(logging.WARNING)
        self.loggers = loggers
        self.info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}

    def emit(self, record):
        msg = record.getMessage()
        for key, pattern in _LOGGED_SETS.items():
            m = pattern.search(msg)
            if m:
                try:
                    self.info[key] = sorted(ast.literal_eval(m.group(1)), key=str)
                except (ValueError, SyntaxError):
                    self.info[key] = [m.group(1)]

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_warning()
        for name in self.loggers:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        for name in self.loggers:
            logging.getLogger(name).removeHandler(self)
        hf_logging.set_verbosity(self._level)
        return False
