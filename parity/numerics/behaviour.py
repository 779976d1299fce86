"""Behaviour checks beside the forward pass, compared: ``compare`` turns the workers' ``--generate`` and
``--pipeline`` reports into results.json's ``generation`` and ``pipeline`` lists, one entry per pair, each
against the reference the forward comparison used (what the workers are asked: parity.planning.behaviour)."""

from __future__ import annotations


def compare(cfg, runs: dict, comparisons: list, reference: str | None) -> tuple[list | None, list | None]:
    """(generation entries, pipeline entries); None for a part not asked for."""
    from parity.numerics import generation_compare, pipelines_compare

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


def failed_everywhere(entries: list | None) -> bool:
    """Whether a behaviour pair could not run on either side (the check's error, exit 3, not a mismatch)."""
    return any(e.get("failed_everywhere") for e in entries or [])
