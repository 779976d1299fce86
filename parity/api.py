"""Python entry points shared by the CLI and the pytest plugin."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from . import inputs, tasks
from .checkpoint import Checkpoint
from .compare import compare_pair
from .config import CheckConfig
from .errors import EXIT_FRAMEWORK, EXIT_MISMATCH, EXIT_OK, UsageError
from .executor import execute
from .outputs import group, model_order
from .results import Results, environment, versions
from .runners import runner_class
from .runners.base import LoadSpec


def check(path, **options) -> Results:
    """Load ``path`` in each framework, run one batch, compare every output.

    Options are CheckConfig's fields (task, frameworks, reference, source,
    texts, texts_file, batch_size, max_length, seed, device, atol, rtol,
    outputs, report_dir, inline). Raises UsageError for bad input; framework
    failures and mismatches are in the returned Results (see ``exit_code``).
    """
    return run_check(CheckConfig(path=str(path), **options).validated())


def run_check(cfg: CheckConfig, *, batch=None, baseline=None, on_outputs=None) -> Results:
    """Run one check. Seams for golden baselines (parity.baseline):

    ``batch``: a recorded Batch used as is instead of building one.
    ``baseline``: {framework: recorded outputs}; each framework is then compared
    with its own recorded outputs (reference ``baseline:<fw>``) instead of with
    ``cfg.reference``, so one framework is enough.
    ``on_outputs(framework, outputs)``: called with each framework's outputs
    before they are released (to record them).
    """
    t_start = time.perf_counter()
    ckpt = Checkpoint.open(cfg.path)
    task, classes = tasks.resolve(ckpt.config, cfg.task, cfg.frameworks, cfg.reference,
                                  min_frameworks=1 if baseline is not None else 2)
    supported = [fw for fw in cfg.frameworks if classes[fw]]
    plans = ckpt.plan(supported, cfg.source)
    ckpt.verify_weights(plans)
    if cfg.report_dir:
        _check_writable(Path(cfg.report_dir))

    fw_results: dict[str, dict] = {}
    specs: dict[str, LoadSpec] = {}
    for fw in cfg.frameworks:
        entry = {"status": None, "error": None, "class_name": classes[fw], "weights": None,
                 "converted_from": None, "via": None, "device": None,
                 "load": {"missing": [], "unexpected": [], "mismatched": [], "notes": []}, "seconds": {}}
        fw_results[fw] = entry
        if not classes[fw]:
            entry["status"] = "unsupported"
            entry["error"] = (f"transformers {versions()['transformers']} has no {fw} class for "
                              f"model type {ckpt.model_type!r} and task {task}")
            continue
        plan = plans[fw]
        entry.update(weights=plan.weights, converted_from=plan.converted_from, via=plan.via)
        reason = runner_class(fw).unavailable_reason()
        if reason:
            entry["status"], entry["error"] = "unavailable", reason
            continue
        specs[fw] = LoadSpec(path=str(ckpt.path.resolve()), task=task, class_name=classes[fw],
                             weights=plan.weights, converted_from=plan.converted_from, via=plan.via,
                             device=cfg.device, output_hidden_states="hidden_states" in cfg.outputs,
                             output_attentions="attentions" in cfg.outputs)

    recorded_batch = batch

    def make_batch():
        if recorded_batch is not None:
            return recorded_batch
        return inputs.build(ckpt.path, ckpt.config, texts=cfg.texts, texts_file=cfg.texts_file,
                            batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)

    fingerprint = ckpt.fingerprint()
    with tempfile.TemporaryDirectory(prefix="parity-") as workdir:
        batch, runs = execute(specs, make_batch, workdir=Path(workdir), inline=cfg.inline, device=cfg.device)
        for fw, run in runs.items():
            entry = fw_results[fw]
            entry["status"], entry["error"] = run.status, run.error
            entry["seconds"] = run.seconds
            if run.traceback:
                entry["traceback"] = run.traceback
            if run.load:
                entry["device"] = run.load["device"]
                entry["load"] = {k: run.load.get(k, []) for k in ("missing", "unexpected", "mismatched", "notes")}
        if on_outputs is not None:
            for fw, run in runs.items():
                if run.status == "ok":
                    on_outputs(fw, run.outputs)
        comparisons = (_compare_baseline(cfg, runs, batch, baseline) if baseline is not None
                       else _compare_all(cfg, runs, batch))
        for run in runs.values():
            if hasattr(run.outputs, "close"):
                run.outputs.close()

    failed_fw = [fw for fw, e in fw_results.items() if e["status"] in ("error", "crashed", "unavailable")]
    if failed_fw:
        code = EXIT_FRAMEWORK
    elif not all(c["passed"] for c in comparisons):
        code = EXIT_MISMATCH
    else:
        code = EXIT_OK
    results = Results(
        passed=code == EXIT_OK, exit_code=code, task=task,
        checkpoint={"path": str(cfg.path), "model_type": ckpt.model_type,
                    "architectures": ckpt.config.get("architectures"), "fingerprint": fingerprint["sha256"],
                    "files": fingerprint["files"]},
        inputs=batch.describe(),
        environment=environment({fw: e["device"] for fw, e in fw_results.items()}),
        config=cfg.to_dict(), frameworks=fw_results, comparisons=comparisons,
        seconds={"total": time.perf_counter() - t_start},
    )
    if cfg.report_dir:
        results.save(Path(cfg.report_dir) / "results.json")
    return results


def _compare_all(cfg: CheckConfig, runs: dict, batch) -> list[dict]:
    ref = runs.get(cfg.reference)
    if ref is None or ref.status != "ok":
        return []
    comparisons = []
    for fw in cfg.frameworks:
        run = runs.get(fw)
        if fw == cfg.reference or run is None or run.status != "ok":
            continue
        names = [n for n in ref.names if group(n) in cfg.outputs]
        names += [n for n in run.names if n not in ref.names and group(n) in cfg.outputs]
        comparisons.append(compare_pair(cfg.reference, fw, ref.outputs, run.outputs, model_order(names),
                                        tolerance=cfg.tolerance, attention_mask=batch.attention_mask))
    return comparisons


def _compare_baseline(cfg: CheckConfig, runs: dict, batch, baseline: dict) -> list[dict]:
    comparisons = []
    for fw in cfg.frameworks:
        run = runs.get(fw)
        if run is None or run.status != "ok" or fw not in baseline:
            continue
        recorded = baseline[fw]
        names = [n for n in recorded if group(n) in cfg.outputs]
        names += [n for n in run.names if n not in recorded and group(n) in cfg.outputs]
        comparisons.append(compare_pair(f"baseline:{fw}", fw, recorded, run.outputs, model_order(names),
                                        tolerance=cfg.tolerance, attention_mask=batch.attention_mask))
    return comparisons


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".parity-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"report folder {folder} cannot be written ({e.strerror})",
                         "pass --report-dir with a writable folder") from None
