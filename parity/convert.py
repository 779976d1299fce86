"""`parity convert`: write a checkpoint in another framework's format, then prove it.

1. A worker of the target framework loads the source weights (``from_pt``;
   TF/Flax -> PyTorch through runners/workarounds/pt_conversion.py; TF <-> Flax through
   PyTorch weights) and ``save_pretrained``s into a temporary folder beside OUT,
   the source's config and tokenizer files are copied in, and the folder is
   renamed to OUT: OUT is complete or absent, never half-written.
2. The proof: the source, loaded natively in its framework, and OUT, loaded
   natively in the target framework, run one batch (parity.api.run_check with
   per-framework folders) and export their weights, which parity.worker.weights
   compares tensor by tensor (exact by default: conversion copies numbers).
3. OUT/results.json: the check's results plus a ``conversion`` section.

``verify=True`` skips step 1 and proves an existing OUT again (for example
before the source framework's weights are deleted).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from parity.planning import tasks
from parity.api import run_check
from parity.planning.checkpoint import Checkpoint
from parity.contracts.atomic import publish_dir
from parity.planning.config import FRAMEWORKS, CheckConfig
from parity.contracts import registry
from parity.contracts.errors import EXIT_FRAMEWORK, EXIT_MISMATCH, EXIT_OK, FrameworkError, UsageError
from parity.execution.executor import save_converted
from parity.contracts.results import Results
from parity.contracts.versions import unavailable_reason
from parity.contracts.protocol import LoadSpec
from parity.contracts.exports import load as load_export
from parity.numerics.weights_diff import diff_weights



def _weights_file_pattern() -> re.Pattern:
    """Weight files (and shards, and shard indexes) of any framework: never copied from the source."""
    names = [n for files in registry.weight_files().values() for n in files if not n.endswith(".index.json")]
    stems = sorted({n.split(".", 1)[0] for n in names})
    suffixes = sorted({n.split(".", 1)[1] for n in names})
    return re.compile(rf"^({'|'.join(map(re.escape, stems))})(-\d+-of-\d+)?"
                      rf"\.({'|'.join(map(re.escape, suffixes))})(\.index\.json)?$")


_WEIGHTS_FILE = _weights_file_pattern()
SKIP_FILES = {"results.json"}


def _framework(value: str, what: str) -> str:
    fw = registry.canonical(value)
    savers = [k for k in FRAMEWORKS if registry.get(k).native_file]  # KerasHub writes no transformers checkpoint
    if fw not in savers:
        problem = (f"{what} {fw}: it writes no transformers weights of its own" if fw in FRAMEWORKS
                   else f"unknown framework {value!r} for {what}")
        raise UsageError(problem, f"{what} takes {', '.join(savers)}")
    return fw


def source_framework(ckpt: Checkpoint, requested: str, target: str) -> str:
    """--from auto: the source's weights other than the target's, PyTorch first."""
    if requested != "auto":
        src = _framework(requested, "--from")
        if src not in ckpt.weights:
            raise UsageError(f"--from {src} but {ckpt.path} has no {src} weights (it has: {', '.join(ckpt.weights)})",
                             "pass --from auto or one of the weights it holds")
    else:
        others = [fw for fw in FRAMEWORKS if fw in ckpt.weights and fw != target]
        if not others:
            raise UsageError(f"{ckpt.path} holds only {target} weights, nothing to convert to {target}",
                             f"pass --to with another framework ({', '.join(FRAMEWORKS)})")
        src = others[0]
    if src == target:
        raise UsageError(f"source and target are both {target}", "pass --to with a framework other than --from")
    return src


def _check_out(out: Path, source: Path, *, force: bool, verify: bool) -> None:
    if out.resolve() == source.resolve():
        raise UsageError(f"OUT {out} is the source checkpoint itself", "pass a new folder as OUT")
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out} is a file", "pass a folder path as OUT")
    if verify:
        if not out.is_dir():
            raise UsageError(f"--verify but OUT {out} does not exist", "run parity convert without --verify first")
        return
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"OUT {out} exists and is not empty", "pass an empty or new folder, or --force to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".parity-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"OUT {out} cannot be written ({e.strerror})", "pass an OUT inside a writable folder") from None


def _write(ckpt: Checkpoint, spec: LoadSpec, target: str, out: Path, *, inline: bool,
           device: str) -> tuple[list[str], dict]:
    """Convert into a temporary folder beside OUT, copy config/tokenizer files, rename to OUT."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.parity-", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="parity-convert-") as workdir:
            run = save_converted(target, spec, tmp, workdir=Path(workdir), inline=inline, device=device)
        if run.status != "ok":
            raise FrameworkError(f"{target} could not convert {ckpt.path}: {run.error}",
                                 "run with --inline --debug for the traceback")
        for f in sorted(ckpt.path.iterdir()):
            if f.is_file() and not f.name.startswith(".") and not _WEIGHTS_FILE.match(f.name) \
                    and f.name not in SKIP_FILES:
                shutil.copy2(f, tmp / f.name)  # the source's config.json replaces the re-serialised one
        publish_dir(tmp, out, replace=True)  # --force: the old folder is swapped out, then removed
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(f.name for f in out.iterdir() if f.is_file()), run.load or {}


def convert(path, out, *, to: str, source: str = "auto", task: str | None = None, force: bool = False,
            verify: bool = False, weights_atol: float = 0.0, **check_options) -> Results:
    """Convert ``path`` to framework ``to`` in ``out`` (or, with ``verify``, prove an existing ``out``).

    ``check_options`` are CheckConfig fields for the output comparison (device, atol,
    rtol, texts, seed, inline, ...). Returns Results with a ``conversion`` section,
    also saved as ``out/results.json``. Raises UsageError for bad input and
    FrameworkError when the conversion itself fails.
    """
    t0 = time.perf_counter()
    target = _framework(to, "--to")
    ckpt = Checkpoint.open(str(path))
    src = source_framework(ckpt, source, target)
    out = Path(out)
    _check_out(out, ckpt.path, force=force, verify=verify)
    weights_atol = float(weights_atol)
    cfg = CheckConfig(path=str(ckpt.path), task=task, frameworks=[src, target], reference=src, source=src,
                      report_dir=None, **check_options).validated()
    task, classes = tasks.resolve(ckpt.config, cfg.task, cfg.frameworks, cfg.reference)
    cfg.task = task
    for fw in (src, target):
        reason = unavailable_reason(fw)
        if reason:
            raise FrameworkError(f"{fw} is unavailable ({reason})", f"install parity[{registry.get(fw).extra}]")
    plan = ckpt.plan([target], src)[target]
    ckpt.verify_weights({target: plan})

    written, load, t_convert = None, {}, 0.0
    if not verify:
        spec = LoadSpec(path=str(ckpt.path.resolve()), task=task, class_name=classes[target], weights=plan.weights,
                        converted_from=plan.converted_from, via=plan.via, device=cfg.device,
                        output_hidden_states=False, output_attentions=False)
        t1 = time.perf_counter()
        written, load = _write(ckpt, spec, target, out, inline=cfg.inline, device=cfg.device)
        t_convert = time.perf_counter() - t1

    with tempfile.TemporaryDirectory(prefix="parity-weights-") as wdir:
        results = run_check(cfg, paths={target: out}, weights_dir=Path(wdir))
        exports = {fw: Path(wdir) / f"{fw}.npz" for fw in (src, target)}
        comparison = None
        if all(p.exists() for p in exports.values()):
            comparison = diff_weights(load_export(exports[src]), load_export(exports[target]), atol=weights_atol)
    out_ckpt = Checkpoint.open(str(out))
    results.conversion = {
        "from": src, "to": target, "source": str(path), "output": str(out), "verify_only": verify,
        "source_weights": ckpt.weights[src], "output_weights": out_ckpt.weights.get(target),
        "converted_via": plan.via, "written": written,
        "load": {k: load.get(k, []) for k in ("missing", "unexpected", "mismatched", "notes")},
        "output_fingerprint": out_ckpt.fingerprint()["sha256"],
        "weights": comparison.to_dict() if comparison else None,
        "outputs_passed": results.passed,
        "seconds": {"convert": t_convert, "total": time.perf_counter() - t0},
    }
    results.exit_code = _exit_code(results.exit_code, comparison)
    results.passed = results.exit_code == EXIT_OK
    results.save(out / "results.json")
    return results


def _exit_code(check_code: int, comparison) -> int:
    """3 when a framework failed or the weights could not be compared, 1 when weights or outputs differ."""
    if check_code == EXIT_FRAMEWORK or comparison is None:
        return EXIT_FRAMEWORK
    if not comparison.passed or check_code == EXIT_MISMATCH:
        return EXIT_MISMATCH
    return EXIT_OK
