"""Which pairs of a check compare tokenizers, and what each worker is asked to tokenize.

Sides could tokenize differently where they run in another environment (another transformers) or where one
loads through its own converter (KerasHub): there each side tokenizes the check's texts with its own tokenizer
in its own worker (parity.worker.tokenize). Sides in the same environment and library share one tokenizer:
no pair, no cost. The forward comparison keeps its one shared batch either way."""

from __future__ import annotations

from parity.contracts import registry
from parity.contracts.errors import UsageError
from parity.planning import environments

MODES = ("compare", "report", "off")


def mode(value) -> str:
    value = str(value).strip().lower()
    if value not in MODES:
        raise UsageError(f"unknown --tokenizers value {value!r}",
                         "--tokenizers takes compare (a differing id fails the check), report (shown, never "
                         "failing) or off")
    return value


def _own(key: str) -> tuple:
    """What decides a side's tokenizer: its environment, and KerasHub's own converter."""
    return environments.split(key)[1], bool(registry.get(key).catalog)


def pairs(cfg) -> list[tuple[str, str]]:
    if cfg.tokenizers == "off":
        return []
    return [(cfg.reference, fw) for fw in cfg.frameworks
            if fw != cfg.reference and (_own(fw) != _own(cfg.reference) or _own(fw)[1])]


def request(cfg, has_tokenizer: bool) -> dict:
    """The ``tokenize`` part of every WorkerRequest, or {} when no pair compares tokenizers."""
    if not has_tokenizer or not pairs(cfg):
        return {}
    from parity.planning.batch import DEFAULT_TEXTS, read_texts

    texts = read_texts(cfg.texts, cfg.texts_file) or list(DEFAULT_TEXTS)
    return {"tokenize": {"texts": texts, "max_length": cfg.max_length}}
