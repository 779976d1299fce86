"""What KerasHub converts from a transformers checkpoint, read from KerasHub's own source with ``ast``.

The parent process plans a check without importing any framework, and importing
keras_hub imports Keras, TensorFlow and a backend (seconds). So the table is read
from the installed files, the way tasks.py reads transformers' auto mappings:

- model types: the ``model_type == "bert"`` / ``model_type in (...)`` chain in
  ``TransformersPresetLoader.__init__`` (keras_hub/src/utils/transformers/preset_loader.py),
  each naming a converter module;
- the class a model type loads as: the converter's ``backbone_cls``;
- text models: backbones whose source declares a ``token_ids`` input (parity feeds
  KerasHub token batches; image and audio backbones are left out, with the reason);
- tasks: ``base`` is the backbone. ``causal-lm`` is the backbone's ``CausalLM`` task
  class (``backbone_cls = ...`` beside it), whose head is the token embedding reversed
  or the converted ``lm_head``, both backbone weights. The preset loader converts no
  other text head (it loads head weights for image classifiers only), so the other
  tasks have no class here.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

TASK_BASES = {"causal-lm": "CausalLM"}  # parity task -> KerasHub task base class whose head is converted
LOADER = "keras_hub/src/utils/transformers/preset_loader.py"


def _root() -> Path | None:
    """keras_hub/src, found without importing keras_hub."""
    try:
        spec = importlib.util.find_spec("keras_hub")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    src = Path(list(spec.submodule_search_locations)[0]) / "src"
    return src if src.is_dir() else None


def installed() -> bool:
    return _root() is not None


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("keras-hub")
    except PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=None)
def converters() -> dict[str, str]:
    """{transformers model_type: converter module name} from the preset loader's if/elif chain."""
    root = _root()
    if root is None:
        return {}
    tree = ast.parse((root / "utils" / "transformers" / "preset_loader.py").read_text(encoding="utf-8"))
    found = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
            continue
        test = node.test
        if not (isinstance(test.left, ast.Name) and test.left.id == "model_type" and len(test.comparators) == 1):
            continue
        try:
            types = ast.literal_eval(test.comparators[0])
        except ValueError:
            continue
        module = next((stmt.value.id for stmt in node.body if isinstance(stmt, ast.Assign)
                       and isinstance(stmt.value, ast.Name) and stmt.value.id.startswith("convert_")), None)
        if module:
            for model_type in (types,) if isinstance(types, str) else types:
                found[model_type] = module
    return found


def _imports(tree) -> dict[str, str]:
    """{name: dotted module} for ``from module import name`` lines."""
    return {alias.asname or alias.name: node.module for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}


def _module_file(root: Path, dotted: str) -> Path:
    return root.parent.parent / (dotted.replace(".", "/") + ".py")  # root is <site-packages>/keras_hub/src


@functools.lru_cache(maxsize=None)
def backbone(model_type: str) -> tuple[str, Path] | None:
    """(backbone class name, its source file) for a model type KerasHub converts."""
    root = _root()
    module = converters().get(model_type)
    if root is None or module is None:
        return None
    tree = ast.parse((root / "utils" / "transformers" / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "backbone_cls" for t in node.targets)
                and isinstance(node.value, ast.Name)):
            name = node.value.id
            source = _imports(tree).get(name)
            return (name, _module_file(root, source)) if source else None
    return None


NOT_TEXT = ('"images"', '"pixel_values"', '"audio')  # input names of KerasHub's vision / audio towers


def takes_tokens(model_type: str) -> bool:
    """Whether the backbone is text only: it declares a token_ids input and no image or audio input."""
    found = backbone(model_type)
    text = found[1].read_text(encoding="utf-8") if found and found[1].is_file() else ""
    return '"token_ids"' in text and not any(name in text for name in NOT_TEXT)


@functools.lru_cache(maxsize=None)
def task_class(model_type: str, task: str) -> str | None:
    """The KerasHub class a (model type, task) loads as: the backbone, or its converted task class."""
    found = backbone(model_type)
    if found is None or not takes_tokens(model_type):
        return None
    if task == "base":
        return found[0]
    base = TASK_BASES.get(task)
    if base is None:
        return None
    named = []  # task classes declaring backbone_cls = the backbone (Llama3CausalLM(LlamaCausalLM) counts)
    for path in sorted(found[1].parent.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if f"{base})" not in text or found[0] not in text:
            continue
        for node in ast.parse(text).body:
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "").endswith(base) for b in node.bases):
                if any(isinstance(s, ast.Assign) and getattr(s.value, "id", None) == found[0]
                       and any(getattr(t, "id", None) == "backbone_cls" for t in s.targets) for s in node.body):
                    named.append(node.name)
    # Several task classes may share a backbone (Gemma4CausalLM, Gemma4AssistantCausalLM): the one named
    # after it first.
    own = found[0].replace("Backbone", base)
    return own if own in named else (named[0] if named else None)


def classes(task: str) -> dict[str, str]:
    """{model_type: KerasHub class} for one parity task."""
    return {mt: cls for mt in converters() if (cls := task_class(mt, task))}


def why_not(model_type: str, task: str) -> str:
    """Why KerasHub cannot load (model type, task), in one clause."""
    if _root() is None:
        return "keras-hub is not installed"
    hub = f"KerasHub {version()}"
    found = backbone(model_type)
    if model_type not in converters():
        return f"{hub} has no converter for model type {model_type!r} ({LOADER})"
    if found is None:
        return f"{hub}'s {converters()[model_type]} names no backbone class"
    if not takes_tokens(model_type):
        return f"{hub} converts {model_type} as {found[0]}, which takes no token_ids (parity feeds KerasHub text only)"
    if task in TASK_BASES:
        return f"{hub} has no {TASK_BASES[task]} task class for {found[0]}"
    return (f"{hub} converts {model_type} as {found[0]} and loads no {task} head from the checkpoint "
            "(its transformers converter ports head weights for image classifiers only)")
