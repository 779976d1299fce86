"""Runner contract (after Polygraphy's runners): ``load()`` then ``run(arrays)``.

Each public method wraps an ``_impl`` that a framework module fills in, and
times it. Runner modules import their framework lazily, inside the methods,
so ``parity`` itself stays framework-free.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from parity.contracts.errors import FrameworkError
from parity.contracts.protocol import LoadReport, LoadSpec


NONFINITE_NAMED = 3  # weights named in the load note about NaN / Inf


class Runner:
    """Subclasses set ``descriptor`` (their framework's facts) and fill in the ``_impl`` methods."""

    descriptor = None  # parity.contracts.descriptor.Framework

    def __init__(self, spec: LoadSpec):
        self.spec = spec
        self.model = None
        self.report: LoadReport | None = None
        self.run_seconds = 0.0

    @property
    def framework(self) -> str:
        return self.descriptor.key

    @classmethod
    def release(cls) -> None:
        """After a pooled worker's check (parity.execution.pool): drop what the framework keeps of the last model.
        The models themselves go with the runner; compile caches stay."""

    def import_framework(self) -> float:
        """Import the framework, transformers and the model's class before loading; the seconds taken
        (results.json ``seconds.import``, apart from ``load``)."""
        t0 = time.perf_counter()
        self._import_impl()
        return time.perf_counter() - t0

    def _import_impl(self) -> None:
        import importlib

        for module in self.descriptor.requires:
            importlib.import_module(module)
        import transformers

        getattr(transformers, self.spec.class_name, None)  # the lazy module imports the modeling code

    def load(self) -> LoadReport:
        t0 = time.perf_counter()
        self.report = self._load_cached() if self.spec.cache_hit else self._load_impl()
        self._check_weights(self.report)  # before the cache keeps the conversion: float32
        if not self.spec.cache_hit and self.spec.cache_store and self.spec.converted_from:
            self._store()
        self.report.seconds = time.perf_counter() - t0
        return self.report

    def _load_cached(self) -> LoadReport:
        """Load a cached conversion natively; report it as the conversion it stands for."""
        from dataclasses import replace

        from parity.contracts import conversion_cache as cache

        original = self.spec
        self.spec = replace(original, path=original.cache_hit, weights=self.descriptor.native_file,
                            converted_from=None, via=None)
        try:
            report = self._load_impl()
        finally:
            self.spec = original
        saved = cache.load_meta(original.cache_hit)["load"]
        report.weights, report.converted_from, report.via = original.weights, original.converted_from, original.via
        report.missing, report.unexpected = saved.get("missing", []), saved.get("unexpected", [])
        report.mismatched = saved.get("mismatched", [])
        report.notes = saved.get("notes", []) + [f"loaded the converted weights from the cache ({original.cache_hit})"]
        report.cache = "hit"
        return report

    def _store(self) -> None:
        from parity.contracts import conversion_cache as cache

        try:
            cache.store(self.framework, Path(self.spec.cache_store), self._save_native, self.report.to_dict())
            self.report.cache = "stored"
        except Exception as e:  # a full disk must not fail the check
            self.report.notes.append(f"conversion cache not written ({type(e).__name__}: {e})")

    def _check_weights(self, report: LoadReport) -> None:
        """Every framework computes in float32 unless the key's loading variant says otherwise (pt:bf16,
        pt@v5:auto): weights loaded in another floating dtype are cast (a note says what the checkpoint stored),
        or under a variant kept (a note says which dtype it runs); weights holding NaN or Inf are named in a
        note. One pass over the weights, one tensor at a time."""
        from parity.contracts import variants

        if variants.dtype(self.spec.options) in (None, "float32"):
            self._keep_float32(report)
        else:
            kept = ", ".join(sorted(self._float_dtypes()))
            stored = f"checkpoint weights are {self.spec.weights_dtype}; " if self.spec.weights_dtype else ""
            _note_once(report.notes, "loaded as ", f"{stored}loaded as {kept} (loading variant "
                       f":{':'.join(self.spec.options)}; outputs compared in float32)")
        report.settings = report.settings or {"dtype": ", ".join(sorted(self._float_dtypes())) or None}
        bad = list(self._nonfinite_weights())
        if bad:
            named = ", ".join(f"{name} ({n} of {size})" for name, n, size in bad[:NONFINITE_NAMED])
            more = f" and {len(bad) - NONFINITE_NAMED} more" if len(bad) > NONFINITE_NAMED else ""
            _note_once(report.notes, "weights hold NaN or Inf: ", f"weights hold NaN or Inf: {named}{more}")

    def _keep_float32(self, report: LoadReport) -> None:
        found = self._float_dtypes() - {"float32"}
        if found:
            self._to_float32()
            left = self._float_dtypes() - {"float32"}
            if left:
                raise FrameworkError(f"{self.framework} weights are still {', '.join(sorted(left))} after casting "
                                     "to float32", "report this with the transformers version in results.json")
        stored = self.spec.weights_dtype if self.spec.weights_dtype not in (None, "float32") else None
        if found or stored:
            note = (f"checkpoint weights are {stored or ', '.join(sorted(found))}; loaded as float32 "
                    "(parity compares float32 in every framework)")
            kept = f"; {self.descriptor.label} kept {', '.join(sorted(found))}, cast to float32 by parity"
            _note_once(report.notes, note, note + kept if found else note)

    def _nonfinite_weights(self):
        """(name, NaN/Inf count, size) of each floating weight that is not all finite."""
        import numpy as np

        for name, arr in self._weight_arrays():
            arr = np.asarray(arr)
            if np.issubdtype(arr.dtype, np.floating):
                finite = int(np.isfinite(arr).sum())
                if finite != arr.size:
                    yield name, arr.size - finite, arr.size

    def _float_dtypes(self) -> set:
        """The floating dtypes of the loaded weights, as numpy names ("float32", "float16", "bfloat16")."""
        raise NotImplementedError

    def _to_float32(self) -> None:
        """Cast every floating weight to float32 in place."""
        raise NotImplementedError

    def _weight_arrays(self):
        """(framework's name, numpy array) for every weight, one at a time."""
        raise NotImplementedError

    def _save_native(self, folder) -> None:
        self.save(folder)  # the runner's own save: Flax passes the params of a _do_init=False model

    def run(self, arrays: dict) -> dict:
        """Run the batch; return flattened float32 numpy outputs (see outputs.flatten)."""
        t0 = time.perf_counter()
        out = self._run_impl(arrays)
        self.run_seconds = time.perf_counter() - t0
        return out

    def run_float64(self, arrays: dict) -> dict:
        """The same batch with weights and activations upcast to float64 (the oracle)."""
        raise NotImplementedError(f"{self.framework} has no float64 oracle")

    pipeline_framework = None  # transformers.pipeline's framework name; None: no pipelines (parity.worker.pipelines)
    generate_module = None  # the transformers module holding this framework's generate (generation.reads)

    def generate(self, prompt: dict, fixed: dict) -> tuple:
        """``model.generate`` on ``prompt`` with the model's generation config plus ``fixed`` (parity.worker.generation):
        (sequences, processed scores (steps, rows, vocab) or None when generate returns none, info)."""
        import importlib

        from parity.worker import generation

        info = {"loaded_config": generation.effective_config(self.model, fixed),
                "reads": generation.reads(importlib.import_module(self.generate_module).__file__)}
        gc = self.model.generation_config
        eos = gc.eos_token_id[0] if isinstance(gc.eos_token_id, (list, tuple)) else gc.eos_token_id
        info["pad_token_id"] = next((t for t in (gc.pad_token_id, eos, 0) if t is not None))
        sequences, processed = self._generate_impl(prompt, fixed)
        # TF's and Flax's generate replace a generation config marked _from_model_config with one rebuilt from
        # config.json (on the model itself): what they generated with is read afterwards.
        info["config"] = generation.effective_config(self.model, fixed)
        info["scores"] = "processed" if processed is not None else None
        return sequences, processed, info

    def _generate_impl(self, prompt: dict, fixed: dict) -> tuple:
        raise NotImplementedError(f"{self.framework} has no generate")

    def input_names(self) -> set:
        """Keyword inputs the model's forward accepts (to probe the defaults it fills in)."""
        import inspect

        return set(inspect.signature(self._forward()).parameters)

    def _forward(self):
        raise NotImplementedError

    def export_weights(self) -> dict:
        """The loaded model's weights as {PyTorch-style name: numpy array in PyTorch layout} (parity.worker.weights)."""
        from parity.worker.weights import strip_base_prefix

        return strip_base_prefix(self._export_impl(), getattr(self.model, "base_model_prefix", None))

    def save(self, folder: str) -> None:
        """save_pretrained the loaded model in this framework's own format."""
        self.model.save_pretrained(folder)

    def _load_impl(self) -> LoadReport:
        raise NotImplementedError

    def _export_impl(self) -> dict:
        raise NotImplementedError

    def _run_impl(self, arrays: dict) -> dict:
        raise NotImplementedError

    def _require_gpu(self, seen: bool, who: str) -> None:
        """--device gpu is a promise: fail the load rather than silently compare CPU numbers."""
        if self.spec.device == "gpu" and not seen:
            raise FrameworkError(f"--device gpu but {who} sees no GPU", "pass --device auto or cpu")

    @contextlib.contextmanager
    def _weights_source(self, notes: list):
        """(folder, converted_from) to load: the checkpoint, or for a conversion transformers has no
        direct path for (TF <-> Flax), a temporary folder of PyTorch weights (bridge.py), removed after."""
        from parity.worker.runners import bridge

        if not self.spec.via:
            yield self.spec.path, self.spec.converted_from
            return
        if self.spec.bridged:  # executor._bridge: made once for the check, removed with its workdir
            notes.append(f"{self.spec.converted_from} weights converted to PyTorch weights first, in a kept "
                         f"PyTorch worker: transformers has no direct {self.spec.converted_from} -> "
                         f"{self.framework} path")
            yield self.spec.bridged, self.spec.via
            return
        tmp = bridge.via_pytorch(self.spec.path, self.spec.class_name, self.spec.weights,
                                 self.spec.converted_from, self.spec.trust_remote_code)
        notes.append(f"{self.spec.converted_from} weights converted to PyTorch weights first: "
                     f"transformers has no direct {self.spec.converted_from} -> {self.framework} path")
        try:
            yield str(tmp), self.spec.via
        finally:
            bridge.cleanup(tmp)

    def _flags(self, fn, notes: list, **extra) -> dict:
        """The output flags every framework gets, plus its own inference switches, kept where ``fn`` takes them."""
        wanted = {"output_hidden_states": self.spec.output_hidden_states,
                  "output_attentions": self.spec.output_attentions, "return_dict": True, **extra}
        return call_flags(fn, wanted, notes, self.spec.class_name)

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


def _note_once(notes: list, prefix: str, note: str) -> None:
    """Append ``note`` unless a note starting with ``prefix`` is there (a cached conversion carries the
    notes of the load that stored it)."""
    if not any(n.startswith(prefix) for n in notes):
        notes.append(note)


def _keyname(key) -> str:
    return "/".join(map(str, key)) if isinstance(key, (tuple, list)) else str(key)
