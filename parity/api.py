"""Python entry points shared by the CLI and the pytest plugin."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from parity.planning import environments, batch as inputs, tasks
from parity.numerics.behaviour import compare as compare_behaviour
from parity.numerics.behaviour import passed as behaviour_passed
from parity.planning.behaviour import requests
from parity.planning.checkpoint import Checkpoint
from parity.numerics.compare import compare_pair
from parity.planning.config import CheckConfig
from parity.contracts.errors import EXIT_FRAMEWORK, EXIT_INTERRUPTED, EXIT_MISMATCH, EXIT_OK, UsageError
from parity.execution.executor import RunInterrupted, execute
from parity.contracts.outputs import group, model_order
from parity.contracts.versions import has_auto_module, unavailable_reason
from parity.planning.preflight import weights_dtype
from parity.contracts.results import FrameworkEntry, Results, environment
from parity.contracts import registry
from parity.contracts.protocol import LoadSpec


def check(path, **options) -> Results:
    """Load ``path`` in each framework, run one batch, compare every output.

    Options are CheckConfig's fields (task, frameworks, reference, source,
    texts, texts_file, batch_size, max_length, seed, device, atol, rtol,
    outputs, report_dir, inline, timeout, trust_remote_code). Raises UsageError
    for bad input; framework failures and mismatches are in the returned
    Results (see ``exit_code``). Ctrl-C raises Interrupted after writing a
    results.json marked ``complete: false, interrupted: true``.
    """
    return run_check(CheckConfig(path=str(path), **options).validated())


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a check; ``results`` is what finished, saved to ``path`` when there is a report folder."""

    def __init__(self, results: Results, path: Path | None):
        super().__init__("interrupted")
        self.results = results
        self.path = path


def run_check(cfg: CheckConfig, batch: inputs.Batch | None = None, *, progress=None, save: bool = True,
              paths: dict | None = None, weights_dir: Path | None = None, baseline: dict | None = None,
              on_outputs=None, baseline_sources: dict | None = None) -> Results:
    """Run one check; ``batch`` replaces the built batch (replays, recorded inputs).

    ``progress(subject, state)`` hears loading / running / done per framework and comparing
    per pair; ``save=False`` skips results.json. ``paths`` ({framework: folder}) loads those
    frameworks natively from their own folder instead of ``cfg.path`` (parity convert: the
    source in its framework against the converted copy in the target's); the batch is built
    from ``cfg.path``. ``weights_dir`` makes every framework also export its weights there.

    Golden baselines (parity.baseline): ``baseline`` is {framework: recorded outputs}; each
    framework is then compared with its own recording (reference ``baseline:<fw>``) instead of
    with ``cfg.reference``, so one framework is enough; ``baseline_sources`` ({framework: recorded
    framework}) names another framework's recording where that is what ``baseline`` holds. ``on_outputs(framework, outputs)`` is
    called with each framework's outputs before they are released (to record them)."""
    t_start = time.perf_counter()
    ckpt = Checkpoint.open(cfg.path, trust_remote_code=cfg.trust_remote_code)
    _check_max_length(ckpt.config, cfg.max_length)
    envs = environments.resolve(cfg.frameworks, cfg.envs)  # probes each --env interpreter: bad ones end here
    if not cfg.inline:
        from parity.execution.pool import current

        current()  # PARITY_POOL_SOCKET naming no server ends here, before any worker
    missing = {fw: why for fw in cfg.frameworks if (why := _unavailable(fw, envs))}
    task, classes = tasks.resolve(ckpt.config, cfg.task, cfg.frameworks, cfg.reference,
                                  min_frameworks=1 if baseline is not None else 2,
                                  roots={fw: environments.of(fw, envs).transformers for fw in cfg.frameworks},
                                  unavailable=set(missing))
    behaviour = requests(cfg, task, ckpt.config)  # --generate / --pipeline: bad input ends here
    paths = paths or {}
    plans, folders = _plan(ckpt, cfg, [fw for fw in cfg.frameworks if classes[fw] and fw not in missing], paths)
    if cfg.report_dir:
        from parity.report.write import check_writable

        check_writable([cfg.report_dir], "--report-dir")
    fingerprint = ckpt.fingerprint(remember=cfg.cache)
    fw_results, specs = _specs(cfg, ckpt, task, classes, plans, folders, paths, fingerprint["files"], envs,
                               missing)

    def make_batch():
        if batch is not None:
            return batch
        return inputs.build(ckpt.path, ckpt.config, texts=cfg.texts, texts_file=cfg.texts_file,
                            batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed,
                            trust_remote_code=cfg.trust_remote_code, task=task,
                            files=fingerprint["files"] if cfg.cache else None)

    with tempfile.TemporaryDirectory(prefix="parity-") as workdir:
        outcome = _run_and_compare(cfg, specs, make_batch, Path(workdir), t_start, progress=progress,
                                   weights_dir=weights_dir, baseline=baseline, on_outputs=on_outputs,
                                   fw_results=fw_results, baseline_sources=baseline_sources, behaviour=behaviour)
    results = Results(
        passed=outcome.code == EXIT_OK, exit_code=outcome.code, task=task,
        checkpoint={"path": str(cfg.path), "model_type": ckpt.model_type,
                    "architectures": ckpt.config.get("architectures"), "labels": _labels(ckpt.config),
                    "fingerprint": fingerprint["sha256"],
                    "files": fingerprint["files"]},
        inputs=outcome.batch.describe() if outcome.batch is not None else NO_INPUTS,
        environment=environment({fw: e["device"] for fw, e in fw_results.items()}),
        config=cfg.to_dict(), frameworks=fw_results, comparisons=outcome.comparisons,
        seconds={**outcome.stages, "total": time.perf_counter() - t_start, "cpu": _own_cpu()},
        diagnosis=outcome.diagnosis, schedule=outcome.schedule, reference_used=outcome.reference_used,
        complete=not outcome.interrupted, interrupted=outcome.interrupted,
        generation=outcome.generation, pipeline=outcome.pipeline,
    )
    path = results.save(Path(cfg.report_dir) / "results.json") if cfg.report_dir and save else None
    if outcome.interrupted:
        raise Interrupted(results, path)
    if cfg.save_replay:
        from parity.replay import save

        save(Path(cfg.save_replay), cfg, outcome.batch, results)
    return results


def _plan(ckpt: Checkpoint, cfg: CheckConfig, supported: list[str], paths: dict) -> tuple[dict, dict]:
    """Which weights each supported framework loads (checked now), and from which folder."""
    plans = ckpt.plan([fw for fw in supported if fw not in paths], cfg.source)
    ckpt.verify_weights(plans)
    folders = {fw: ckpt.path for fw in supported}
    for fw in supported:
        if fw in paths:
            own = Checkpoint.open(str(paths[fw]))
            plans.update(own.plan([fw], fw))
            own.verify_weights({fw: plans[fw]})
            folders[fw] = own.path
    return plans, folders


def _specs(cfg: CheckConfig, ckpt: Checkpoint, task: str, classes: dict, plans: dict, folders: dict,
           paths: dict, files: dict, envs: dict, missing: dict) -> tuple[dict[str, dict], dict[str, LoadSpec]]:
    """results.json's entry for every framework, and a LoadSpec for each that can run."""
    fw_results: dict[str, dict] = {}
    specs: dict[str, LoadSpec] = {}
    for fw in cfg.frameworks:
        env = environments.of(fw, envs)
        entry = FrameworkEntry(class_name=classes[fw]).to_dict()  # filled in below; Results types it
        entry["environment"] = env.record()
        fw_results[fw] = entry
        if fw in missing:
            entry["status"], entry["error"] = "unavailable", missing[fw]
            continue
        if not classes[fw] and not tasks.catalog_readable(fw):
            entry["status"], entry["error"] = "unavailable", unavailable_reason(fw)
            continue
        if not classes[fw]:
            entry["status"] = "unsupported"
            entry["error"] = tasks.no_class_reason(fw, ckpt.model_type, task, env)
            continue
        plan = plans[fw]
        entry.update(weights=plan.weights, converted_from=plan.converted_from, via=plan.via)
        if fw in paths:
            entry["path"] = str(paths[fw])
        reason = _cannot_convert(plan, env)
        if reason:
            entry["status"], entry["error"] = "unsupported", reason
            continue
        specs[fw] = LoadSpec(path=str(folders[fw].resolve()), task=task, class_name=classes[fw],
                             weights=plan.weights, converted_from=plan.converted_from, via=plan.via,
                             device=cfg.device, output_hidden_states="hidden_states" in cfg.outputs,
                             output_attentions="attentions" in cfg.outputs,
                             trust_remote_code=cfg.trust_remote_code,
                             weights_dtype=weights_dtype(folders[fw], plan.weights))
        if cfg.cache:
            _use_caches(fw, specs[fw], files, env.versions)
    return fw_results, specs


def _in(env) -> str:
    return f" (environment {env.name})" if env.name else ""


def _unavailable(fw: str, envs: dict) -> str | None:
    """Why ``fw`` cannot run in its environment (framework or transformers classes missing there), or None."""
    env = environments.of(fw, envs)
    reason = env.unavailable.get(registry.base(fw))
    return f"{reason}{_in(env)}" if reason else None


def _cannot_convert(plan, env) -> str | None:
    """transformers 5 loads PyTorch weights only: a conversion from a framework it no longer has cannot run there."""
    for src in filter(None, (plan.converted_from, plan.via)):
        if not has_auto_module(registry.get(src).auto_module, env.transformers):
            return (f"the checkpoint has {src} weights only for it, and transformers {env.versions['transformers']}"
                    f"{_in(env)} cannot convert them (it has no {registry.get(src).label} classes); convert them "
                    f"under transformers 4 first: parity convert PATH OUT --to {registry.base(plan.framework)}")
    return None


@dataclass
class _Outcome:
    """What running and comparing produced, for run_check's Results."""

    batch: inputs.Batch | None
    comparisons: list
    diagnosis: dict | None
    stages: dict
    schedule: dict | None
    interrupted: bool
    code: int
    reference_used: dict | None = None
    generation: list | None = None   # --generate: one entry per pair (parity.numerics.behaviour)
    pipeline: list | None = None     # --pipeline: likewise


def _run_and_compare(cfg: CheckConfig, specs: dict, make_batch, workdir: Path, t_start: float, *, progress,
                     weights_dir, baseline, on_outputs, fw_results: dict,
                     baseline_sources: dict | None = None, behaviour: dict | None = None) -> _Outcome:
    """Run the frameworks (recording each in ``fw_results``), then compare and, with --explain, diagnose."""
    # --explain: every framework runs the probes; one that can upcast (PyTorch; the reference's when it can,
    # as diagnose judges with it) runs the float64 oracle too.
    oracle = next((fw for fw in [cfg.reference, *specs] if fw in specs and registry.get(fw).float64_oracle), None)
    explain = {fw: {"float64": fw == oracle} for fw in specs} if cfg.explain else None
    run_info: dict = {}
    exports_dir = weights_dir
    if cfg.explain and exports_dir is None:
        # --explain compares every framework's loaded weights tensor by tensor (parity.worker.weights).
        exports_dir = workdir / "weights"
        exports_dir.mkdir()
    stages = {"prepare": time.perf_counter() - t_start}
    t_workers = time.perf_counter()
    try:
        batch, runs = execute(specs, make_batch, workdir=workdir, inline=cfg.inline,
                              pythons={fw: fw_results[fw]["environment"]["python"] for fw in specs if "@" in fw},
                              device=cfg.device, explain=explain, timeout=cfg.timeout,
                              progress=progress, weights_dir=exports_dir, info=run_info, behaviour=behaviour)
        interrupted = False
    except RunInterrupted as stop:
        batch, runs, interrupted = stop.batch, stop.runs, True
    for fw, run in runs.items():
        _record(fw_results[fw], run)
    if on_outputs is not None:
        for fw, run in runs.items():
            if run.status == "ok":
                on_outputs(fw, run.outputs)
    stages["workers"] = time.perf_counter() - t_workers
    t_compare = time.perf_counter()
    comparisons, diagnosis = [], None
    used = None if baseline is not None else reference_used(cfg, fw_results)
    if batch is not None:
        try:
            _compare(cfg, runs, batch, comparisons, progress, baseline, used and used["framework"],
                     baseline_sources)
            if cfg.explain:
                from parity.numerics.diagnose import diagnose

                diagnosis = diagnose(comparisons, runs, fw_results, reference=(used or {}).get("framework")
                                     or cfg.reference,
                                     tolerance=cfg.tolerance, attention_mask=batch.masks,
                                     exports=_exports(exports_dir, runs))
        except KeyboardInterrupt:
            interrupted = True  # keep the pairs already compared
    gen, pipe = compare_behaviour(cfg, runs, comparisons, (used or {}).get("framework")) if behaviour else (None, None)
    stages["compare"] = time.perf_counter() - t_compare
    for run in runs.values():
        for arrays in (run.outputs, run.outputs64, run.gen_arrays):
            if hasattr(arrays, "close"):
                arrays.close()
    code = _exit_code(interrupted, fw_results, comparisons)
    if code == EXIT_OK and not (behaviour_passed(gen) and behaviour_passed(pipe)):
        code = EXIT_MISMATCH
    return _Outcome(batch, comparisons, diagnosis, stages, run_info.get("schedule"), interrupted, code, used,
                    gen, pipe)


def _record(entry: dict, run) -> None:
    """One framework's run into its results.json entry."""
    entry["status"], entry["error"] = run.status, run.error
    entry["seconds"] = run.seconds
    if run.signal or run.timed_out:
        entry.update(signal=run.signal, returncode=run.returncode, timed_out=run.timed_out)
    if run.traceback:
        entry["traceback"] = run.traceback
    if run.imported is not None:
        entry["imported"] = run.imported
    if run.compile_cache is not None:
        entry["compile_cache"] = run.compile_cache
    if run.load:
        entry["device"] = run.load["device"]
        entry["cache"] = run.load.get("cache")
        entry["load"] = {k: run.load.get(k, []) for k in ("missing", "unexpected", "mismatched", "notes")}
        if run.load.get("settings"):
            entry["settings"] = run.load["settings"]


def _exit_code(interrupted: bool, fw_results: dict, comparisons: list) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if any(e["status"] in ("error", "crashed", "unavailable") for e in fw_results.values()):
        return EXIT_FRAMEWORK
    if not all(c["passed"] for c in comparisons):
        return EXIT_MISMATCH
    return EXIT_OK


# inputs of a run interrupted before its batch was built
NO_INPUTS = {"source": None, "seed": None, "texts": None, "tokenizer": None, "keys": [], "shapes": {},
             "dtypes": {}, "padded_positions": 0, "empty_rows": []}


def _labels(config: dict, limit: int = 50) -> dict | None:
    """The checkpoint's id2label (reports name the logits' classes with it), at most ``limit``."""
    labels = config.get("id2label")
    if not isinstance(labels, dict) or not labels:
        return None
    return {str(k): str(v) for k, v in list(labels.items())[:limit]}


def _exports(folder: Path | None, runs: dict) -> dict:
    """The weight exports the workers wrote, by framework (for --explain's weights section)."""
    from parity.contracts.exports import load

    if folder is None:
        return {}
    return {fw: load(folder / f"{fw}.npz") for fw, run in runs.items()
            if run.status == "ok" and (folder / f"{fw}.npz").exists()}


def _check_max_length(config: dict, max_length: int) -> None:
    """A batch longer than the position table fails inside every framework; say so up front."""
    limit = config.get("max_position_embeddings", config.get("n_positions"))
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < max_length:
        raise UsageError(f"--max-length {max_length} is longer than the model's {limit} positions "
                         "(max_position_embeddings in config.json)", f"pass --max-length {limit} or less")


def reference_used(cfg: CheckConfig, fw_results: dict) -> dict:
    """Which framework the others are judged against, and why when it is not ``cfg.reference``.

    A reference that could not produce outputs (unavailable, failed to load or run, crashed) must
    not lose every verdict: the next framework in the declared order that ran stands in, so the
    pairs that can still be compared are (results.json ``reference_used``; the exit code stays 3).
    """
    wanted = fw_results.get(cfg.reference) or {}
    if wanted.get("status") == "ok":
        return {"requested": cfg.reference, "framework": cfg.reference, "reason": None}
    status, error = wanted.get("status") or "not run", wanted.get("error")
    reason = f"{cfg.reference} {status}" + (f": {error}" if error else "")
    ran = [fw for fw in cfg.frameworks if fw != cfg.reference and (fw_results.get(fw) or {}).get("status") == "ok"]
    return {"requested": cfg.reference, "framework": ran[0] if len(ran) > 1 else None, "reason": reason}


def _compare(cfg: CheckConfig, runs: dict, batch, comparisons: list, progress=None,
             baseline: dict | None = None, reference: str | None = None,
             baseline_sources: dict | None = None) -> list[dict]:
    """Each framework that ran against its reference, appended to ``comparisons`` as it goes.

    The reference is ``cfg.reference``'s outputs, or with ``baseline`` the framework's own
    recording (``baseline:<fw>``). Outputs of the chosen groups, the reference's first, then
    any only the candidate has, in the model's order.
    """
    for ref_name, ref_outputs, ref_names, label, fw in _references(cfg, runs, baseline, reference,
                                                                   baseline_sources or {}):
        run = runs[fw]
        if progress:
            progress(label, "comparing")
        names = [n for n in ref_names if group(n) in cfg.outputs]
        names += [n for n in run.names if n not in ref_names and group(n) in cfg.outputs]
        comparisons.append(compare_pair(ref_name, fw, ref_outputs, run.outputs, model_order(names),
                                        tolerance=cfg.tolerance, attention_mask=batch.masks,
                                        seq2seq=batch.seq2seq, top1_min=cfg.top1_min))
    return comparisons


def _references(cfg: CheckConfig, runs: dict, baseline: dict | None, reference: str | None,
                sources: dict) -> list[tuple]:
    """(reference name, its outputs, their names, progress label, candidate) for every comparison to make."""
    ran = [fw for fw in cfg.frameworks if fw in runs and runs[fw].status == "ok"]
    if baseline is not None:  # a recording's names are its keys
        return [(f"baseline:{sources.get(fw, fw)}", baseline[fw], baseline[fw], f"baseline vs {fw}", fw)
                for fw in ran if fw in baseline]
    ref = runs.get(reference)
    if ref is None or ref.status != "ok":
        return []
    return [(reference, ref.outputs, ref.names, f"{reference} vs {fw}", fw) for fw in ran if fw != reference]


def _use_caches(fw: str, spec: LoadSpec, files: dict, env_versions: dict) -> None:
    """Point the spec at a cached conversion (or where to keep this one), and a framework that keeps
    compiled ops (Flax) at its compile cache. Conversions are keyed by the versions of the environment
    that runs them (``env_versions``)."""
    from parity.contracts import conversion_cache as cache

    base = cache.root() if spec.converted_from else None
    if base is not None:
        entry = cache.key(registry.base(fw), spec, files, env_versions)
        hit = cache.lookup(registry.base(fw), entry)
        if hit is not None:
            spec.cache_hit = str(hit)
        else:
            spec.cache_store = str(base / entry)
    if registry.get(fw).compile_cache:
        compile_dir = cache.compile_dir()
        spec.compile_cache = str(compile_dir) if compile_dir else None


def _own_cpu() -> float:
    """CPU seconds of this process so far (workers have their own, under frameworks.<fw>.seconds.cpu)."""
    times = os.times()
    return round(times.user + times.system, 3)
