"""Untrusted checkpoints: find the Python code a checkpoint asks transformers to run.

A folder whose config.json or tokenizer_config.json has an ``auto_map`` names
its own modules (``modeling_x.XModel``); loading them executes that code.
transformers runs it only with ``trust_remote_code=True``, and with False it
quietly falls back to a built-in class when the model type is known, which
would test other code than the author's. parity refuses both up front unless
``--trust-remote-code`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from parity.contracts.errors import UsageError

TRUST_NOTE = "pass --trust-remote-code only if you trust the Python files in that folder"


def custom_code(path: Path, config: dict) -> dict[str, list[str]]:
    """{"config.json": [...], "tokenizer_config.json": [...]}: the auto_map targets each file names."""
    found = {}
    tok_cfg = {}
    try:
        tok_cfg = json.loads((Path(path) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # a broken tokenizer config is the tokenizer loader's to report
    for name, data in (("config.json", config), ("tokenizer_config.json", tok_cfg)):
        amap = data.get("auto_map") if isinstance(data, dict) else None
        if not amap:
            continue
        targets = []
        for value in (amap.values() if isinstance(amap, dict) else [amap]):
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                if v:
                    targets.append(str(v))
        found[name] = sorted(set(targets))
    return found


def check(path: Path, config: dict, trust_remote_code: bool, known_model_type: bool) -> None:
    """Raise UsageError when the checkpoint needs code parity will not (or cannot) run."""
    code = custom_code(path, config)
    if not code:
        return
    where = "; ".join(f"{name} auto_map -> {', '.join(t)}" for name, t in code.items())
    if not trust_remote_code:
        raise UsageError(f"{path} asks to run its own Python code ({where}) and trust_remote_code is off",
                         TRUST_NOTE)
    model_code = [t for t in code.get("config.json", []) if "Config" not in t.rsplit(".", 1)[-1]]
    if model_code or not known_model_type:
        raise UsageError(f"{path} defines its model in custom code ({where}); parity compares transformers' "
                         "built-in PyTorch, TensorFlow and Flax classes, which do not run that code",
                         "check a checkpoint whose model_type the installed transformers implements "
                         "(custom tokenizer code is supported with --trust-remote-code)")
