"""Python entry points shared by the CLI and the pytest plugin."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from parity.contracts import registry
from parity.contracts.errors import EXIT_FRAMEWORK, EXIT_INTERRUPTED, EXIT_MISMATCH, EXIT_OK
from parity.contracts.outputs import group, model_order
from parity.contracts.results import Results, environment
from parity.execution.executor import RunInterrupted, execute
from parity.numerics.behaviour import compare as compare_behaviour
from parity.numerics.behaviour import failed_everywhere
from parity.numerics.behaviour import passed as behaviour_passed
from parity.numerics import precision
from parity.numerics.compare import compare_pair
from parity.planning import batch as inputs
from parity.planning.config import DEFAULT_ATOL, DEFAULT_RTOL, CheckConfig
from parity.planning.plan import CheckPlan, plan_check


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
              on_outputs=None) -> Results:
    """Run one check; ``batch`` replaces the built batch (replays, recorded inputs).

    ``progress(subject, state)`` hears loading / running / done per framework and comparing
    per pair; ``save=False`` skips results.json. ``paths`` ({framework: folder}) loads those
    frameworks natively from their own folder instead of ``cfg.path`` (parity convert: the
    source in its framework against the converted copy in the target's); the batch is built
    from ``cfg.path``. ``weights_dir`` makes every framework also export its weights there.

    Golden baselines (parity.baseline): ``baseline`` is {framework: {recorded framework: its
    outputs}}; each framework is then compared with those recordings (reference
    ``baseline:<recorded>``: its own, another's with --against, or every recording that cannot
    run here) instead of with ``cfg.reference``, so one framework is enough.
    ``on_outputs(framework, outputs)`` is called with each framework's outputs before they are
    released (to record them)."""
    t_start = time.perf_counter()
    plan = plan_check(cfg, batch=batch, paths=paths, baseline=baseline is not None)  # bad input ends here
    _memory(plan)  # a framework that cannot fit even alone ends here, before any worker
    if not cfg.inline:
        from parity.execution.pool import current

        current()  # PARITY_POOL_SOCKET naming no server ends here, before any worker
    if cfg.report_dir:
        from parity.report.write import check_writable

        check_writable([cfg.report_dir], "--report-dir")
    with tempfile.TemporaryDirectory(prefix="parity-") as workdir:
        outcome = _run_and_compare(plan, Path(workdir), t_start, progress=progress, weights_dir=weights_dir,
                                   baseline=baseline, on_outputs=on_outputs)
    results = _results(plan, outcome, t_start)
    path = results.save(Path(cfg.report_dir) / "results.json") if cfg.report_dir and save else None
    if outcome.interrupted:
        raise Interrupted(results, path)
    if cfg.save_replay:
        from parity.replay import save

        save(Path(cfg.save_replay), cfg, outcome.batch, results)
    return results


def _memory(plan: CheckPlan) -> None:
    """Reference first (one at a time runs them in this order), each worker's outputs beside its weights
    (plan.memory), and the refusal when one framework alone cannot fit (parity.execution.schedule)."""
    from parity.execution.schedule import outputs_bytes, refuse_if_too_big

    cfg = plan.cfg
    if cfg.reference in plan.specs:
        plan.specs = {cfg.reference: plan.specs[cfg.reference], **plan.specs}
    from parity.planning.batch import DEFAULT_TEXTS

    rows = cfg.batch_size or len(cfg.texts or DEFAULT_TEXTS)
    f64 = (cfg.explain or cfg.gate == "oracle") and next(
        (fw for fw in plan.specs if registry.get(fw).float64_oracle), None)
    plan.memory = {fw: outputs_bytes(plan.ckpt.config, rows, cfg.max_length, cfg.outputs, float64=fw == f64)
                   for fw in plan.specs}
    if not cfg.inline:
        refuse_if_too_big(plan.specs, plan.memory)


def _results(plan: CheckPlan, outcome: _Outcome, t_start: float) -> Results:
    entries = plan.entries
    return Results(
        passed=outcome.code == EXIT_OK, exit_code=outcome.code, task=plan.task,
        checkpoint=plan.checkpoint_record(),
        inputs=outcome.batch.describe() if outcome.batch is not None else NO_INPUTS,
        environment=environment({fw: e["device"] for fw, e in entries.items()}),
        config=plan.cfg.to_dict(), frameworks=entries, comparisons=outcome.comparisons,
        seconds={**outcome.stages, "total": time.perf_counter() - t_start, "cpu": _own_cpu()},
        diagnosis=outcome.diagnosis, schedule=outcome.schedule, reference_used=outcome.reference_used,
        complete=not outcome.interrupted, interrupted=outcome.interrupted,
        generation=outcome.generation, pipeline=outcome.pipeline, tokenizers=outcome.tokenizers,
        nothing_compared=outcome.nothing_compared,
    )


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
    tokenizers: list | None = None   # tokenizer parity: one entry per pair (parity.numerics.tokenizer_compare)
    nothing_compared: str | None = None  # why no pair was compared (exit 3)


def _run_and_compare(plan: CheckPlan, workdir: Path, t_start: float, *, progress, weights_dir, baseline,
                     on_outputs) -> _Outcome:
    """Run the frameworks (recording each in the plan's entries), then compare and, with --explain, diagnose."""
    cfg = plan.cfg
    stages = {"prepare": time.perf_counter() - t_start}
    t_workers = time.perf_counter()
    exports_dir = weights_dir
    if cfg.explain and exports_dir is None:
        # --explain compares every framework's loaded weights tensor by tensor (parity.worker.weights).
        exports_dir = workdir / "weights"
        exports_dir.mkdir()
    batch, runs, interrupted, schedule = _run(plan, workdir, progress, exports_dir)
    if on_outputs is not None:
        for fw, run in runs.items():
            if run.status == "ok":
                on_outputs(fw, run.outputs)
    stages["workers"] = time.perf_counter() - t_workers
    t_compare = time.perf_counter()
    used = None if baseline is not None else reference_used(cfg, plan.entries)
    reference = (used or {}).get("framework")
    comparisons, diagnosis = [], None
    if batch is not None:
        try:
            _compare(cfg, runs, batch, comparisons, progress, baseline, reference)
            diagnosis = _diagnose(plan, runs, batch, comparisons, reference, exports_dir) if cfg.explain else None
        except KeyboardInterrupt:
            interrupted = True  # keep the pairs already compared
    gen, pipe = compare_behaviour(cfg, runs, comparisons, reference, DEFAULTS) if plan.behaviour else (None, None)
    toks = _tokenizers(plan, runs, reference)
    stages["compare"] = time.perf_counter() - t_compare
    _close(runs)
    code, nothing = _verdict(plan, interrupted, comparisons, (gen, pipe, toks), baseline)
    return _Outcome(batch, comparisons, diagnosis, stages, schedule, interrupted, code, used, gen, pipe, toks,
                    nothing)


def _verdict(plan: CheckPlan, interrupted: bool, comparisons: list, behaviour: tuple, baseline) -> tuple:
    """(exit code, why nothing was compared): a gate that compared nothing must not go green, nor one whose
    behaviour or tokenizers could run on no side."""
    gen, pipe, toks = behaviour
    code = _exit_code(interrupted, plan.entries, comparisons)
    # (recording one framework compares nothing by design: its baseline is an empty dict)
    nothing = None if interrupted or comparisons or baseline == {} else _nothing_compared(plan.entries)
    if nothing:
        code = EXIT_FRAMEWORK
    if code == EXIT_OK and (failed_everywhere(gen) or failed_everywhere(pipe)):
        code = EXIT_FRAMEWORK
    if code == EXIT_OK and any(t.get("error") for t in toks or []):
        code = EXIT_FRAMEWORK  # a side's tokenizer could not load: that side's load error
    if code == EXIT_OK and not (behaviour_passed(gen) and behaviour_passed(pipe) and behaviour_passed(toks)):
        code = EXIT_MISMATCH
    return code, nothing


def _tokenizers(plan: CheckPlan, runs: dict, reference: str | None) -> list | None:
    """Tokenizer parity (parity.planning.tokenizers): each pair's own tokenizers compared, or None."""
    from parity.numerics.tokenizer_compare import compare as compare_tokenizers
    from parity.planning.tokenizers import pairs

    part = plan.behaviour.get("tokenize")
    if not part:
        return None
    ref = reference or plan.cfg.reference
    return [compare_tokenizers(ref, fw, getattr(runs.get(ref), "tokenizer", None),
                               getattr(runs.get(fw), "tokenizer", None), part["texts"],
                               plan.cfg.tokenizers == "report")
            for r, fw in pairs(plan.cfg) if fw in runs and ref in runs]


def _run(plan: CheckPlan, workdir: Path, progress, exports_dir: Path | None) -> tuple:
    """(batch, runs, interrupted, schedule): every spec run by its worker, each recorded in its entry."""
    cfg, specs = plan.cfg, plan.specs
    # --explain: every framework runs the probes; one that can upcast (PyTorch; the reference's when it can,
    # as diagnose judges with it) runs the float64 oracle too.
    # --gate oracle without --explain: the float64 run alone, in that one worker.
    oracle = next((fw for fw in [cfg.reference, *specs] if fw in specs and registry.get(fw).float64_oracle), None)
    explain = {fw: {"float64": fw == oracle} for fw in specs} if cfg.explain else None
    if explain is None and cfg.gate == "oracle" and oracle:
        explain = {oracle: {"float64": True, "probes": False}}
    run_info: dict = {}
    try:
        batch, runs = execute(specs, plan.make_batch, workdir=workdir, inline=cfg.inline, pythons=plan.pythons(),
                              device=cfg.device, explain=explain, timeout=cfg.timeout, progress=progress,
                              weights_dir=exports_dir, info=run_info, behaviour=plan.behaviour,
                              memory=plan.memory)
        interrupted = False
    except RunInterrupted as stop:
        batch, runs, interrupted = stop.batch, stop.runs, True
    for fw, run in runs.items():
        _record(plan.entries[fw], run)
    return batch, runs, interrupted, run_info.get("schedule")


def _diagnose(plan: CheckPlan, runs: dict, batch, comparisons: list, reference: str | None,
              exports_dir: Path | None) -> dict:
    from parity.numerics.diagnose import diagnose

    return diagnose(comparisons, runs, plan.entries, reference=reference or plan.cfg.reference,
                    tolerance=plan.cfg.tolerance, attention_mask=batch.masks, exports=_exports(exports_dir, runs))


def _close(runs: dict) -> None:
    """Close the workers' npz files (outputs, float64 oracle, generation arrays) once compared."""
    for run in runs.values():
        for arrays in (run.outputs, run.outputs64, run.gen_arrays):
            if hasattr(arrays, "close"):
                arrays.close()


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


def _nothing_compared(entries: dict) -> str:
    """Why no pair could be compared, from each framework that did not run."""
    why = [f"{fw} {e['status']}" + (f" ({e['error']})" if e.get("error") else "")
           for fw, e in entries.items() if e.get("status") != "ok"]
    ran = [fw for fw, e in entries.items() if e.get("status") == "ok"]
    return "no pair was compared: " + "; ".join(why + ([f"only {ran[0]} ran"] if len(ran) == 1 else []))


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




def _exports(folder: Path | None, runs: dict) -> dict:
    """The weight exports the workers wrote, by framework (for --explain's weights section)."""
    from parity.contracts.exports import load

    if folder is None:
        return {}
    return {fw: load(folder / f"{fw}.npz") for fw, run in runs.items()
            if run.status == "ok" and (folder / f"{fw}.npz").exists()}




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


DEFAULTS = (DEFAULT_ATOL, DEFAULT_RTOL)


def _compare(cfg: CheckConfig, runs: dict, batch, comparisons: list, progress=None,
             baseline: dict | None = None, reference: str | None = None) -> list[dict]:
    """Each framework that ran against its reference, appended to ``comparisons`` as it goes.

    The reference is ``cfg.reference``'s outputs, or with ``baseline`` the framework's own
    recording (``baseline:<fw>``). Outputs of the chosen groups, the reference's first, then
    any only the candidate has, in the model's order.
    """
    for ref_name, ref_outputs, ref_names, label, fw in _references(cfg, runs, baseline, reference):
        run = runs[fw]
        if progress:
            progress(label, "comparing")
        names = [n for n in ref_names if group(n) in cfg.outputs]
        names += [n for n in run.names if n not in ref_names and group(n) in cfg.outputs]
        dtype = precision.pair_dtype(ref_name, fw)  # a :bf16 / :fp16 side: statistical gate, dtype tolerances
        comparisons.append(compare_pair(ref_name, fw, ref_outputs, run.outputs, model_order(names),
                                        tolerance=precision.tolerance(cfg.tolerance, dtype, DEFAULTS),
                                        attention_mask=batch.masks, seq2seq=batch.seq2seq, top1_min=cfg.top1_min,
                                        precision=dtype,
                                        oracle=None if baseline is not None else _float64(runs, reference),
                                        oracle_gate=cfg.gate == "oracle",
                                        not_produced={side: _not_produced(side, runs[side]) for side in (ref_name, fw)
                                                      if side in runs}))
    return comparisons


def _not_produced(fw: str, run) -> dict:
    """Output groups ``fw``'s loading does not produce: attention maps under an attention implementation other
    than eager (SDPA returns none; transformers 5 loads SDPA by default, so ``pt@v5:auto`` has none)."""
    impl = ((run.load or {}).get("settings") or {}).get("attn_implementation")
    if impl in (None, "eager") or any(group(n) == "attentions" for n in run.names):
        return {}
    return {"attentions": f"{fw} loads attention {impl}, which returns no attention maps (:eager compares them)"}


def _references(cfg: CheckConfig, runs: dict, baseline: dict | None, reference: str | None) -> list[tuple]:
    """(reference name, its outputs, their names, progress label, candidate) for every comparison to make."""
    ran = [fw for fw in cfg.frameworks if fw in runs and runs[fw].status == "ok"]
    if baseline is not None:  # a recording's names are its keys
        return [(f"baseline:{src}", outputs, outputs, f"baseline:{src} vs {fw}", fw)
                for fw in ran for src, outputs in baseline.get(fw, {}).items()]
    ref = runs.get(reference)
    if ref is None or ref.status != "ok":
        return []
    return [(reference, ref.outputs, ref.names, f"{reference} vs {fw}", fw) for fw in ran if fw != reference]


def _float64(runs: dict, reference: str | None):
    """The float64 oracle's outputs (the reference's run when it made them), or None."""
    made = [fw for fw in [reference, *runs] if fw in runs and runs[fw].outputs64 is not None]
    return runs[made[0]].outputs64 if made else None




def _own_cpu() -> float:
    """CPU seconds of this process so far (workers have their own, under frameworks.<fw>.seconds.cpu)."""
    times = os.times()
    return round(times.user + times.system, 3)
