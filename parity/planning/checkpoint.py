"""A checkpoint folder: its config, which framework weights it holds, and how
each framework will be loaded (natively or converted).

Everything here reads files only: no framework is imported, so bad input is
found before any worker starts.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from parity.contracts.errors import UsageError
from parity.contracts import registry
FINGERPRINT_SKIP = {".gitattributes", "README.md", "results.json"}  # parity convert writes results.json into OUT


@dataclass
class LoadPlan:
    """How one framework gets its weights."""

    framework: str
    weights: str                 # file it reads (relative to the checkpoint)
    converted_from: str | None   # None = native weights
    via: str | None = None       # "pt" when TF <-> Flax goes through PyTorch weights


@dataclass
class Checkpoint:
    path: Path
    config: dict
    weights: dict = field(default_factory=dict)   # framework -> first weights file present

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "")

    @classmethod
    def open(cls, path: str, trust_remote_code: bool = False) -> "Checkpoint":
        p = Path(path)
        if not p.exists() and _HUB_ID.match(str(path)):
            p = _from_hub_cache(str(path)) or p
        if not p.exists():
            raise UsageError(f"checkpoint path {path} does not exist",
                             "pass a local folder written by save_pretrained()")
        if not p.is_dir():
            raise UsageError(f"checkpoint path {path} is not a folder",
                             "pass the folder that holds config.json, not a file inside it")
        cfg_path = p / "config.json"
        if not cfg_path.is_file():
            raise UsageError(f"no config.json in {path}",
                             "pass a folder written by save_pretrained() (it holds config.json and the weights)")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"{cfg_path} is not valid JSON ({str(e).splitlines()[0]})",
                             "rewrite it with config.save_pretrained()") from None
        if not isinstance(config, dict) or not config.get("model_type"):
            raise UsageError(f"{cfg_path} has no model_type",
                             "rewrite it with config.save_pretrained(); model_type names the architecture")
        from parity.planning import trust
        from parity.planning.tasks import known_model_types
        trust.check(p, config, trust_remote_code, config["model_type"] in known_model_types())
        if config["model_type"] not in known_model_types():
            raise UsageError(f"{cfg_path} names model_type {config['model_type']!r}, which the installed "
                             "transformers does not know",
                             "fix model_type, or install the transformers version that wrote the checkpoint")
        ckpt = cls(p, config)
        for fw, names in registry.weight_files().items():
            for name in names:
                if (p / name).is_file():
                    ckpt.weights[fw] = name
                    break
        if not ckpt.weights:
            wanted = ", ".join(n for names in registry.weight_files().values() for n in names
                               if not n.endswith(".json"))
            raise UsageError(f"no weights file in {path}", f"the folder needs one of {wanted}")
        return ckpt

    def plan(self, frameworks, source: str) -> dict[str, LoadPlan]:
        """Decide, per framework, which weights it loads and whether they are converted.

        ``source='auto'``: native weights when present, else PyTorch weights,
        else whatever the folder has. ``source=X``: every framework starts from
        X's weights. TF <-> Flax has no direct path in transformers: it goes
        through PyTorch weights (``via='pt'``).
        """
        if source != "auto" and source not in self.weights:
            have = ", ".join(self.weights) or "none"
            raise UsageError(f"--source {source} but {self.path} has no {source} weights "
                             f"(it has: {have})", "pass --source auto or one of the weights it holds")
        plans = {}
        for key in frameworks:
            fw = registry.base(key)  # pt@v5 loads what pt would
            if source == "auto":
                if fw in self.weights:
                    src = fw
                else:
                    src = next(s for s in registry.KEYS if s in self.weights)
            else:
                src = source
            via = registry.route(fw, src)
            plans[key] = LoadPlan(fw, self.weights[src], None if src == fw else src, via)
        return plans

    def verify_weights(self, plans: dict[str, LoadPlan]) -> None:
        """Preflight every weights file a plan reads (parity.planning.preflight): headers, sizes, shard
        indexes, pickled globals, config.json against the shapes. Before any worker starts."""
        from parity.planning import preflight

        preflight.check_weights(self.path, self.config, {p.weights for p in plans.values()})

    def fingerprint(self, remember: bool = True) -> dict:
        """sha256 per file and one combined digest, so results name exactly what was tested.

        Large files' digests are remembered by their stat (cache.file_digest): a re-check of
        an unchanged bert-base skips reading its 418 MiB again (about 1 s here); ``remember=False``
        (--no-cache) hashes every file.
        """
        from parity.contracts import conversion_cache as cache

        files = {}
        total = hashlib.sha256()
        for f in sorted(self.path.iterdir()):
            if not f.is_file() or f.name in FINGERPRINT_SKIP or f.name.startswith("."):
                continue
            digest = cache.file_digest(f) if remember else cache.sha256(f)
            files[f.name] = {"sha256": digest, "bytes": f.stat().st_size}
            total.update(f.name.encode() + b"\0" + digest.encode())
        return {"sha256": total.hexdigest(), "files": files}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _from_hub_cache(repo_id: str) -> Path | None:
    """Resolve a hub id through huggingface_hub (the cache when HF_HUB_OFFLINE=1)."""
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(repo_id))
    except Exception:
        return None

