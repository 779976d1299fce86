"""What every worker is asked beside the forward pass: ``--generate`` and ``--pipeline``, validated here
(bad input is a UsageError before any worker starts); the workers run them (parity.worker.generation,
parity.worker.pipelines) and parity.numerics.behaviour compares what they did."""

from __future__ import annotations

from parity.contracts.errors import UsageError

GENERATIVE_TASKS = ("causal-lm", "seq2seq-lm", "vision2seq", "speech-seq2seq")
DEFAULT_MAX_NEW_TOKENS = 20
# parity task -> transformers pipeline task
PIPELINES = {
    "sequence-classification": "text-classification",
    "token-classification": "token-classification",
    "question-answering": "question-answering",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
    "seq2seq-lm": "text2text-generation",
}
TOP_K = 5  # fill-mask candidates compared


def requests(cfg, task: str, config: dict) -> dict:
    """{"generate": ..., "pipeline": ...} for every worker (only the parts asked for)."""
    out = {}
    if cfg.generate:
        fixed = settings(task, cfg.max_new_tokens, cfg.num_beams)
        if "max_length" in cfg.chosen:  # --max-length left out: the prompts make room for the new tokens
            fit_length(cfg, config, task, fixed["max_new_tokens"])
        check_length(config, task, cfg.max_length, fixed["max_new_tokens"])
        out["generate"] = {"task": task, **fixed}
    if cfg.pipeline:
        out["pipeline"] = pipeline_request(cfg, task, config)
    return out


def settings(task: str | None, max_new_tokens, num_beams) -> dict:
    """The settings parity fixes for every framework, validated (UsageError: one line, exit 2)."""
    if task is not None and task not in GENERATIVE_TASKS:
        raise UsageError(f"--generate needs a generative model, and task {task} cannot generate",
                         f"generation runs for {', '.join(GENERATIVE_TASKS)}; leave out --generate "
                         "or pass --task with one of them")
    out = {"do_sample": False}
    for name, value, low in (("max_new_tokens", max_new_tokens, 1), ("num_beams", num_beams, 1)):
        try:
            ivalue = int(value)
        except (TypeError, ValueError):
            ivalue = None
        if ivalue is None or isinstance(value, bool) or ivalue < low or str(value).strip() != str(ivalue):
            raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}",
                             f"pass --{name.replace('_', '-')} N, e.g. --{name.replace('_', '-')} "
                             f"{DEFAULT_MAX_NEW_TOKENS if name == 'max_new_tokens' else 4}")
        out[name] = ivalue
    return out


def fit_length(cfg, config: dict, task: str, max_new_tokens: int) -> None:
    """The default --max-length shortened so that a decoder-only prompt plus the new tokens fit the position
    table (said in ``cfg.chosen``); a --max-length the user gave is left to check_length to refuse."""
    limit = config.get("max_position_embeddings", config.get("n_positions"))
    if task == "causal-lm" and isinstance(limit, int) and 0 < limit < cfg.max_length + max_new_tokens:
        fitted = max(1, limit - max_new_tokens)
        cfg.chosen["max_length"] = (f"{fitted}: the model's {limit} positions less {max_new_tokens} new tokens "
                                    f"(--max-length defaults to {cfg.max_length})")
        cfg.max_length = fitted


def check_length(config: dict, task: str, prompt_length: int, max_new_tokens: int) -> None:
    """A decoder-only prompt plus the new tokens must fit the position table."""
    limit = config.get("max_position_embeddings", config.get("n_positions"))
    if task == "causal-lm" and isinstance(limit, int) and 0 < limit < prompt_length + max_new_tokens:
        raise UsageError(f"--max-length {prompt_length} plus --max-new-tokens {max_new_tokens} is longer than the "
                         f"model's {limit} positions", f"pass --max-length {max(1, limit - max_new_tokens)} or "
                         "less, or a smaller --max-new-tokens")


def pipeline_request(cfg, task: str, config: dict) -> dict:
    """The pipeline part of every WorkerRequest (UsageError for a task without a pipeline). Its texts are
    truncated as the forward batch is (``max_length`` tokens), and a decoder-only model's prompts further, so
    that they and the new tokens fit the position table."""
    from parity.planning.batch import DEFAULT_TEXTS, read_texts

    if task not in PIPELINES:
        raise UsageError(f"--pipeline: task {task} has no transformers pipeline that parity runs",
                         f"pipelines run for {', '.join(PIPELINES)}; leave out --pipeline")
    texts = read_texts(cfg.texts, cfg.texts_file) or list(DEFAULT_TEXTS)
    max_length = cfg.max_length
    limit = config.get("max_position_embeddings", config.get("n_positions"))
    if task == "causal-lm" and isinstance(limit, int) and limit > 0:
        max_length = max(1, min(max_length, limit - int(cfg.max_new_tokens)))
    return {"task": PIPELINES[task], "texts": texts, "max_new_tokens": cfg.max_new_tokens, "top_k": TOP_K,
            "max_length": max_length}
