"""Behaviour checks beside the forward pass, compared: ``compare`` turns the workers' ``--generate`` and
``--pipeline`` reports into results.json's ``generation`` and ``pipeline`` lists, one entry per pair, each
against the reference the forward comparison used (what the workers are asked: parity.planning.behaviour)."""

from __future__ import annotations


def compare(cfg, runs: dict, comparisons: list, reference: str | None,
            defaults: tuple = (1e-5, 1e-5)) -> tuple[list | None, list | None]:
    """(generation entries, pipeline entries); None for a part not asked for. A pair with a :bf16 / :fp16 side
    (parity.numerics.precision) is judged at that dtype's tolerances where the check kept the float32 ``defaults``,
    and its generation by vLLM's log-probability closeness rule."""
    from parity.numerics import generation_compare, pipelines_compare, precision

    ok = [fw for fw in cfg.frameworks if fw in runs and runs[fw].status == "ok"]
    pairs = [fw for fw in ok if fw != reference] if reference in ok else []
    forward = {c["candidate"]: c for c in comparisons}
    gen = pipe = None
    if cfg.generate:
        gen = [generation_compare.compare(
            reference, fw, runs[reference], runs[fw], forward=forward.get(fw), num_beams=cfg.num_beams,
            tolerance=precision.tolerance(cfg.tolerance, precision.pair_dtype(reference, fw), defaults)(
                "generation.scores"), precision=precision.pair_dtype(reference, fw)) for fw in pairs]
    if cfg.pipeline:
        pipe = [pipelines_compare.compare(
            reference, fw, runs[reference].pipeline, runs[fw].pipeline,
            tolerance=precision.tolerance(cfg.tolerance, precision.pair_dtype(reference, fw), defaults)(
                "pipeline.scores")) for fw in pairs]
    return gen, pipe


def passed(entries: list | None) -> bool:
    return all(e["passed"] for e in entries or [])


def failed_everywhere(entries: list | None) -> bool:
    """Whether a behaviour pair could not run on either side (the check's error, exit 3, not a mismatch)."""
    return any(e.get("failed_everywhere") for e in entries or [])
