"""Task name -> the (PyTorch, TF, Flax) class triple, read from transformers' own
auto mappings so the table follows the installed transformers.

The mappings are read from the source of ``transformers.models.auto`` with
``ast`` rather than imported: importing ``modeling_auto`` imports torch
(seconds), and the parent process must stay framework-free.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from .errors import UsageError
from .runners import registry


# task -> mapping stem (MODEL_..._MAPPING_NAMES without the framework prefix).
# Order matters for inference: the first task whose PyTorch mapping lists the
# checkpoint's architecture wins.
TASKS = {
    "base": "MODEL_MAPPING_NAMES",
    "sequence-classification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "token-classification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "question-answering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "multiple-choice": "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
    "masked-lm": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "causal-lm": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "seq2seq-lm": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "pretraining": "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "next-sentence-prediction": "MODEL_FOR_NEXT_SENTENCE_PREDICTION_MAPPING_NAMES",
    "image-classification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "vision2seq": "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES",
    "speech-seq2seq": "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
}


def _auto_dir() -> Path:
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("transformers is not installed", "pip install 'transformers>=4.40,<5'")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "auto"


@functools.lru_cache(maxsize=None)
def _read_mappings(module: str) -> dict[str, dict[str, str]]:
    """All ``*_MAPPING_NAMES = OrderedDict([...])`` literals of one auto module."""
    path = _auto_dir() / f"{module}.py"
    if not path.is_file():
        return {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id.endswith("_MAPPING_NAMES")):
            continue
        call = node.value
        if not (isinstance(call, ast.Call) and call.args):
            continue
        try:
            pairs = ast.literal_eval(call.args[0])
        except ValueError:
            continue
        mapping = {}
        for key, value in pairs:
            # A few entries map to a tuple of classes; the first is the canonical one.
            mapping[key] = value[0] if isinstance(value, (tuple, list)) else value
        found[node.targets[0].id] = mapping
    return found


def mapping(framework: str, task: str) -> dict[str, str]:
    """model_type -> class name for one framework and task (empty when none)."""
    fw = registry.get(framework)
    if fw.catalog:  # a framework with its own converters says what it converts (runners/keras_catalog.py)
        return _catalog(fw.catalog).classes(task)
    return _read_mappings(fw.auto_module).get(fw.auto_prefix + TASKS[task], {})


def _catalog(module: str):
    import importlib

    return importlib.import_module(f"{registry.__package__}.{module}")


def catalog_readable(framework: str) -> bool:
    """False for a framework with its own catalog that is not installed: what it converts is unknown."""
    fw = registry.get(framework)
    return not fw.catalog or _catalog(fw.catalog).installed()


def no_class_reason(framework: str, model_type: str, task: str) -> str:
    """Why ``framework`` is unsupported for (model type, task): results.json's error for it."""
    fw = registry.get(framework)
    if fw.catalog:
        return _catalog(fw.catalog).why_not(model_type, task)
    from .results import versions

    return (f"transformers {versions()['transformers']} has no {framework} class for "
            f"model type {model_type!r} and task {task}")


@functools.lru_cache(maxsize=None)
def known_model_types() -> frozenset:
    return frozenset(_read_mappings("configuration_auto").get("CONFIG_MAPPING_NAMES", {}))


def classes(model_type: str, task: str, frameworks) -> dict[str, str | None]:
    """{framework: class name or None when that framework has no class}."""
    return {fw: mapping(fw, task).get(model_type) for fw in frameworks}


def infer(config: dict) -> str:
    """Task from ``config.architectures`` (BertForSequenceClassification -> sequence-classification).

    TF / Flax architecture names (TFBertModel, FlaxBertModel) are read as
    their PyTorch twin. Without architectures, the bare model (``base``).
    """
    archs = config.get("architectures") or []
    model_type = config.get("model_type", "")
    reference = registry.KEYS[0]  # the twin class names are PyTorch's (no prefix)
    for arch in archs:
        for fw in registry.FRAMEWORKS:
            prefix = fw.class_prefix
            if prefix and arch.startswith(prefix) and arch[len(prefix):len(prefix) + 1].isupper():
                arch = arch[len(prefix):]
        for task in TASKS:
            if mapping(reference, task).get(model_type) == arch:
                return task
        for task in TASKS:
            if arch in mapping(reference, task).values():
                return task
    if archs:
        raise UsageError(f"cannot infer the task from architectures {archs}",
                         f"pass --task, one of {', '.join(TASKS)}")
    return "base"


def resolve(config: dict, task: str | None, frameworks, reference: str,
            min_frameworks: int = 2) -> tuple[str, dict]:
    """Pick the task and its class per framework; raise UsageError for impossible ones."""
    if task is None:
        task = infer(config)
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}", f"--task takes one of {', '.join(TASKS)}")
    model_type = config.get("model_type", "")
    found = classes(model_type, task, frameworks)
    # A framework whose own catalog cannot be read (KerasHub not installed) counts: it is reported `unavailable`.
    have = [fw for fw, c in found.items() if c or not catalog_readable(fw)]
    if not have:
        raise UsageError(f"model type {model_type!r} has no {task} class in any of {', '.join(frameworks)}",
                         "pass a --task the architecture has (`parity check` infers it from config.architectures "
                         "when --task is left out)")
    if not found.get(reference):
        raise UsageError(f"model type {model_type!r} has no {task} class in {reference}, the reference",
                         f"pass --reference with one of {', '.join(have)}")
    if len(have) < min_frameworks:
        missing = ", ".join(fw for fw in frameworks if not found[fw])
        raise UsageError(f"model type {model_type!r} has a {task} class only in {have[0]}, none in {missing}",
                         "pass a --task that at least two frameworks implement")
    return task, found
