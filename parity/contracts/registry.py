"""The frameworks parity runs, in their default order (the first is the default reference).

Adding a framework is one runner module (parity/worker/runners/), its facts declared
once as ``DESCRIPTOR`` in parity/contracts/frameworks/, and one line here. Everything
below derives from the descriptors; nothing imports a framework or a runner.
"""

from __future__ import annotations

from parity.contracts.descriptor import Framework
from parity.contracts.frameworks import flax, keras, tf, torch

FRAMEWORKS: tuple[Framework, ...] = (
    torch.DESCRIPTOR,
    tf.DESCRIPTOR,
    flax.DESCRIPTOR,
    keras.KERAS_JAX, keras.KERAS_TF, keras.KERAS_TORCH,
)

BY_KEY = {fw.key: fw for fw in FRAMEWORKS}
KEYS = tuple(BY_KEY)
DEFAULT_KEYS = tuple(fw.key for fw in FRAMEWORKS if fw.default)  # what --frameworks means when left out
ALIASES = {alias: fw.key for fw in FRAMEWORKS for alias in fw.aliases}


def base(key: str) -> str:
    """"pt@v5:bf16" -> "pt": the framework of a key qualified with its environment (parity.planning.environments)
    and loading options (parity.contracts.variants)."""
    return key.partition(":")[0].partition("@")[0]


def get(key: str) -> Framework:
    """The descriptor of a framework key, qualified ("pt@v5") or not."""
    return BY_KEY[base(key)]


def canonical(name: str) -> str:
    """"torch" / "PyTorch" -> "pt"; an unknown name is returned lower-cased for the caller to refuse."""
    name = str(name).strip().lower()
    return ALIASES.get(name, name)


def spoken(keys=KEYS, last: str = "and") -> str:
    """("pt", "tf", "flax") -> "pt, tf and flax"."""
    keys = list(keys)
    return keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} {last} {keys[-1]}"


def packages() -> tuple:
    """Every framework's version packages, in registry order."""
    return tuple(dict.fromkeys(p for fw in FRAMEWORKS for p in fw.packages))


def shown_versions() -> tuple:
    """transformers and each framework's headline packages, as report headers list them."""
    return ("transformers",) + tuple(dict.fromkeys(p for fw in FRAMEWORKS for p in fw.shown_versions))


def use_env_names() -> tuple:
    return tuple(v for fw in FRAMEWORKS for v in fw.use_env)


def not_produced(key: str, group: str) -> str | None:
    """Why framework ``key`` produces no output of ``group`` (KerasHub: no attention maps), or None."""
    fw = BY_KEY.get(base(key))
    return dict(fw.no_outputs).get(group) if fw else None


def worker_env_defaults() -> dict:
    return {k: v for fw in FRAMEWORKS for k, v in fw.worker_env}


def cpu_only_env() -> dict:
    return {k: v for fw in FRAMEWORKS for k, v in fw.cpu_only_env}


def weight_files() -> dict:
    return {fw.key: fw.weight_files for fw in FRAMEWORKS}


def route(target: str, source: str) -> str | None:
    """The framework a conversion source -> target goes through, or None when direct (or native).

    transformers converts between PyTorch and each other framework only, so TF <->
    Flax goes through PyTorch weights.
    """
    if source == target or source in get(target).converts_from:
        return None
    return next((fw.key for fw in FRAMEWORKS if source in fw.converts_from and fw.key in get(target).converts_from),
                None)


def pt_twin(class_name: str) -> str:
    """TFBertModel / FlaxBertModel -> BertModel: the class without its framework prefix."""
    for fw in FRAMEWORKS:
        if fw.class_prefix and class_name.startswith(fw.class_prefix):
            return class_name[len(fw.class_prefix):]
    return class_name
