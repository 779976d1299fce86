"""Behaviour checks beside the forward pass: ``--generate`` and ``--pipeline``, parent side.

``requests`` turns the options into the parts every WorkerRequest carries (bad
input is a UsageError before any worker starts); ``compare`` turns the
workers' reports into results.json's ``generation`` and ``pipeline`` lists, one
entry per pair, each against the reference the forward comparison used.
"""

from __future__ import annotations

from . import generation, pipelines


def requests(cfg, task: str, config: dict) -> dict:
    """{"generate": ..., "pipeline": ...} for every worker (only the parts asked for)."""
    out = {}
    if cfg.generate:
        fixed = generation.settings(task, cfg.max_new_tokens, cfg.num_beams)
        generation.check_length(config, task, cfg.max_length, fixed["max_new_tokens"])
        out["generate"] = {"task": task, **fixed}
    if cfg.pipeline:
        out["pipeline"] = pipelines.request(cfg, task)
    return out


def compare(cfg, runs: dict, comparisons: list, reference: str | None) -> tuple[list | None, list | None]:
    """(generation entries, pipeline entries); None for a part not asked for."""
    from . import generation_compare, pipelines_compare

    ok = [fw for fw in cfg.frameworks if fw in runs and runs[fw].status == "ok"]
    pairs = [fw for fw in ok if fw != reference] if reference in ok else []
    forward = {c["candidate"]: c for c in comparisons}
    gen = pipe = None
    if cfg.generate:
        tol = cfg.tolerance("generation.scores")
        gen = [generation_compare.compare(reference, fw, runs[reference], runs[fw], tolerance=tol,
                                          forward=forward.get(fw), num_beams=cfg.num_beams) for fw in pairs]
    if cfg.pipeline:
        tol = cfg.tolerance("pipeline.scores")
        pipe = [pipelines_compare.compare(reference, fw, runs[reference].pipeline, runs[fw].pipeline, tolerance=tol)
                for fw in pairs]
    return gen, pipe


def passed(entries: list | None) -> bool:
    return all(e["passed"] for e in entries or [])
