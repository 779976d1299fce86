"""Task name -> the (PyTorch, TF, Flax) class triple, read from transformers' own
auto mappings so the table follows the installed transformers.

The mappings are read from the source of ``transformers.models.auto`` with
``ast`` rather than imported: importing ``modeling_auto`` imports torch
(seconds), and the parent process must stay framework-free. Reading source
also lets the parent read another environment's transformers (``root``: its
package folder, parity.planning.environments) without running it. transformers 5 moved
CONFIG_MAPPING_NAMES into ``auto_mappings.py`` and extends it with
``.update({...})``; both layouts are read.
"""

from __future__ import annotations

import ast
import functools

from parity.contracts.errors import UsageError
from parity.contracts import registry
from parity.contracts.versions import auto_dir


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


def _pairs(node) -> list | None:
    """The (key, value) pairs of ``OrderedDict([...])`` or of a ``{...}`` literal, else None."""
    if isinstance(node, ast.Call) and node.args:
        node = node.args[0]
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return list(value.items()) if isinstance(value, dict) else value


@functools.lru_cache(maxsize=None)
def _read_mappings(module: str, root: str | None = None) -> dict[str, dict[str, str]]:
    """All ``*_MAPPING_NAMES = OrderedDict([...])`` literals of one auto module, with their ``.update({...})``s."""
    path = auto_dir(root) / f"{module}.py"
    if not path.is_file():
        return {}
    found: dict[str, dict] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, pairs = node.targets[0].id, _pairs(node.value)
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "update"
              and isinstance(node.value.func.value, ast.Name)):
            name, pairs = node.value.func.value.id, _pairs(node.value)
        else:
            continue
        if not name.endswith("_MAPPING_NAMES") or pairs is None:
            continue
        mapping = found.setdefault(name, {})
        for key, value in pairs:
            # A few entries map to a tuple of classes; the first is the canonical one.
            mapping[key] = value[0] if isinstance(value, (tuple, list)) else value
    return found


def mapping(framework: str, task: str, root: str | None = None) -> dict[str, str]:
    """model_type -> class name for one framework and task (empty when none), in the transformers at ``root``."""
    fw = registry.get(framework)
    if fw.catalog:  # a framework with its own converters says what it converts (planning/keras_catalog.py)
        return _catalog(fw.catalog).classes(task)
    return _read_mappings(fw.auto_module, root).get(fw.auto_prefix + TASKS[task], {})


def _catalog(module: str):
    import importlib

    return importlib.import_module(f"{__package__}.{module}")  # parity.planning.keras_catalog


def catalog_readable(framework: str) -> bool:
    """False for a framework with its own catalog that is not installed: what it converts is unknown."""
    fw = registry.get(framework)
    return not fw.catalog or _catalog(fw.catalog).installed()


def no_class_reason(framework: str, model_type: str, task: str, env=None) -> str:
    """Why ``framework`` is unsupported for (model type, task): results.json's error for it.
    ``env``: the parity.planning.environments.Environment it runs in (default: this interpreter)."""
    fw = registry.get(framework)
    if fw.catalog:
        return _catalog(fw.catalog).why_not(model_type, task)
    from parity.contracts.versions import versions

    version = env.versions["transformers"] if env is not None else versions()["transformers"]
    where = f" (environment {env.name})" if env is not None and env.name else ""
    return (f"transformers {version}{where} has no {registry.base(framework)} class for "
            f"model type {model_type!r} and task {task}")


@functools.lru_cache(maxsize=None)
def known_model_types(root: str | None = None) -> frozenset:
    names: set = set()
    for module in ("auto_mappings", "configuration_auto"):  # transformers 5 / 4
        names |= set(_read_mappings(module, root).get("CONFIG_MAPPING_NAMES", {}))
    return frozenset(names)


def classes(model_type: str, task: str, frameworks, roots: dict | None = None) -> dict[str, str | None]:
    """{framework: class name or None when that framework has no class}; ``roots``: {framework: the
    transformers folder of the environment it runs in} (default: this interpreter's)."""
    roots = roots or {}
    return {fw: mapping(fw, task, roots.get(fw)).get(model_type) for fw in frameworks}


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
            min_frameworks: int = 2, roots: dict | None = None, unavailable=()) -> tuple[str, dict]:
    """Pick the task and its class per framework; raise UsageError for impossible ones.

    ``roots`` as in ``classes``; frameworks in ``unavailable`` (not installed, or a
    transformers without them) get their class looked up but do not count: the run
    records them as unavailable instead of refusing the check.
    """
    if task is None:
        task = infer(config)
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}", f"--task takes one of {', '.join(TASKS)}")
    model_type = config.get("model_type", "")
    found = classes(model_type, task, frameworks, roots)
    # Reported as unavailable, and still counted: frameworks not installed or absent from their transformers,
    # and one whose own catalog cannot be read (KerasHub not installed).
    absent = [fw for fw in frameworks if fw in unavailable or (not found[fw] and not catalog_readable(fw))]
    frameworks = [fw for fw in frameworks if fw not in absent]
    if not frameworks:
        return task, found
    have = [fw for fw in frameworks if found[fw]]
    if not have:
        raise UsageError(f"model type {model_type!r} has no {task} class in any of {', '.join(frameworks)}",
                         "pass a --task the architecture has (`parity check` infers it from config.architectures "
                         "when --task is left out)")
    if reference in frameworks and not found.get(reference):
        raise UsageError(f"model type {model_type!r} has no {task} class in {reference}, the reference",
                         f"pass --reference with one of {', '.join(have)}")
    if len(have) + len(absent) < min_frameworks:
        missing = ", ".join(fw for fw in frameworks if not found[fw])
        raise UsageError(f"model type {model_type!r} has a {task} class only in {have[0]}, none in {missing}",
                         "pass a --task that at least two frameworks implement")
    return task, found
