"""The plan of one check, made before any worker starts: the checkpoint, its task and classes, each
framework's environment and LoadSpec (or why it cannot run), the behaviour requests and how to build
the batch. Execution runs ``specs``, comparison reads the rest (parity.api.run_check, top to bottom).

Bad input ends here with a UsageError (exit 2): every file that can be judged without a framework is
judged, every --env interpreter probed, and every conversion refused that its environment cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parity.contracts import registry, variants
from parity.contracts.errors import UsageError
from parity.contracts.protocol import LoadSpec
from parity.contracts.results import FrameworkEntry
from parity.contracts.versions import has_auto_module, unavailable_reason
from parity.planning import batch as inputs
from parity.planning import environments, tasks
from parity.planning.behaviour import requests
from parity.planning.checkpoint import Checkpoint
from parity.planning.config import CheckConfig
from parity.planning.preflight import weights_dtype


@dataclass
class CheckPlan:
    cfg: CheckConfig
    ckpt: Checkpoint
    task: str
    envs: dict                      # environment name -> Environment (parity.planning.environments)
    fingerprint: dict               # the checkpoint's sha256 and files (results.json checkpoint)
    entries: dict                   # framework -> its results.json entry so far (status set where it cannot run)
    specs: dict[str, LoadSpec]      # framework -> what its worker loads: only frameworks that can run
    behaviour: dict = field(default_factory=dict)  # --generate / --pipeline: the part every request carries
    batch: inputs.Batch | None = None  # given (replays, recorded inputs), else built by make_batch
    memory: dict = field(default_factory=dict)  # framework -> bytes of outputs beside its weights (the schedule)

    def make_batch(self) -> inputs.Batch:
        """The one batch every worker gets, built while the workers import (or the one given)."""
        if self.batch is not None:
            return self.batch
        cfg = self.cfg
        return inputs.build(self.ckpt.path, self.ckpt.config, texts=cfg.texts, texts_file=cfg.texts_file,
                            batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed,
                            trust_remote_code=cfg.trust_remote_code, task=self.task,
                            files=self.fingerprint["files"] if cfg.cache else None)

    def checkpoint_record(self) -> dict:
        """results.json ``checkpoint``."""
        config = self.ckpt.config
        return {"path": str(self.cfg.path), "model_type": self.ckpt.model_type,
                "architectures": config.get("architectures"), "labels": _labels(config),
                "fingerprint": self.fingerprint["sha256"], "files": self.fingerprint["files"]}

    def pythons(self) -> dict:
        """The interpreter of each framework that runs in another environment (``pt@v5``)."""
        return {fw: self.entries[fw]["environment"]["python"] for fw in self.specs if "@" in fw}


def plan_check(cfg: CheckConfig, *, batch: inputs.Batch | None = None, paths: dict | None = None,
               baseline: bool = False) -> CheckPlan:
    """Plan ``cfg``; ``paths`` ({framework: folder}) loads those frameworks natively from their own folder
    (parity convert), ``baseline`` lets one framework be enough (compared with its own recording)."""
    ckpt = Checkpoint.open(cfg.path, trust_remote_code=cfg.trust_remote_code)
    _check_max_length(cfg, ckpt.config)
    envs = environments.resolve(cfg.frameworks, cfg.envs)  # probes each --env interpreter: bad ones end here
    missing = {fw: why for fw in cfg.frameworks if (why := _unavailable(fw, envs))}
    task, classes = tasks.resolve(ckpt.config, cfg.task, cfg.frameworks, cfg.reference,
                                  min_frameworks=1 if baseline else 2,
                                  roots={fw: environments.of(fw, envs).transformers for fw in cfg.frameworks},
                                  unavailable=set(missing))
    behaviour = requests(cfg, task, ckpt.config)  # --generate / --pipeline: bad input ends here
    from parity.contracts.batch import has_tokenizer
    from parity.planning.tokenizers import request as tokenizer_request

    behaviour.update(tokenizer_request(cfg, batch is None and has_tokenizer(ckpt.path)))
    paths = paths or {}
    supported = [fw for fw in cfg.frameworks if classes[fw] and fw not in missing]
    weights, folders = _weights(ckpt, cfg, supported, paths)
    fingerprint = ckpt.fingerprint(remember=cfg.cache)
    plan = CheckPlan(cfg, ckpt, task, envs, fingerprint, {}, {}, behaviour, batch)
    for fw in cfg.frameworks:
        _plan_framework(plan, fw, classes[fw], missing.get(fw), weights.get(fw), folders.get(fw), paths.get(fw))
    return plan


def _weights(ckpt: Checkpoint, cfg: CheckConfig, supported: list[str], paths: dict) -> tuple[dict, dict]:
    """Which weights each supported framework loads (checked now), and from which folder."""
    plans = ckpt.plan([fw for fw in supported if fw not in paths], cfg.source)
    ckpt.verify_weights(plans)
    folders = {fw: ckpt.path for fw in supported}
    for fw in supported:
        if fw in paths:
            own = Checkpoint.open(str(paths[fw]))
            plans.update(own.plan([fw], fw))
            own.verify_weights({fw: plans[fw]})
            folders[fw] = own.path
    return plans, folders


def _plan_framework(plan: CheckPlan, fw: str, class_name: str | None, missing: str | None, weights, folder,
                    path) -> None:
    """``fw``'s results.json entry, and its LoadSpec when it can run."""
    cfg, env = plan.cfg, environments.of(fw, plan.envs)
    entry = plan.entries[fw] = FrameworkEntry(class_name=class_name).to_dict()  # filled in later; Results types it
    entry["environment"] = env.record()
    if missing or (not class_name and not tasks.catalog_readable(fw)):
        entry["status"], entry["error"] = "unavailable", missing or unavailable_reason(fw)
        return
    if not class_name:
        entry["status"] = "unsupported"
        entry["error"] = tasks.no_class_reason(fw, plan.ckpt.model_type, plan.task, env)
        return
    entry.update(weights=weights.weights, converted_from=weights.converted_from, via=weights.via)
    if path is not None:
        entry["path"] = str(path)
    reason = _cannot_convert(weights, env)
    if reason:
        entry["status"], entry["error"] = "unsupported", reason
        return
    spec = plan.specs[fw] = LoadSpec(
        path=str(folder.resolve()), task=plan.task, class_name=class_name, weights=weights.weights,
        converted_from=weights.converted_from, via=weights.via, device=cfg.device,
        output_hidden_states="hidden_states" in cfg.outputs, output_attentions="attentions" in cfg.outputs,
        trust_remote_code=cfg.trust_remote_code, weights_dtype=weights_dtype(folder, weights.weights),
        options=list(variants.options(fw)))
    if cfg.cache:
        _use_caches(fw, spec, plan.fingerprint["files"], env.versions)


def _in(env) -> str:
    return f" (environment {env.name})" if env.name else ""


def _unavailable(fw: str, envs: dict) -> str | None:
    """Why ``fw`` cannot run in its environment (framework or transformers classes missing there), or None."""
    env = environments.of(fw, envs)
    reason = env.unavailable.get(registry.base(fw))
    return f"{reason}{_in(env)}" if reason else None


def _cannot_convert(weights, env) -> str | None:
    """transformers 5 loads PyTorch weights only: a conversion from a framework it no longer has cannot run there."""
    for src in filter(None, (weights.converted_from, weights.via)):
        if not has_auto_module(registry.get(src).auto_module, env.transformers):
            return (f"the checkpoint has {src} weights only for it, and transformers {env.versions['transformers']}"
                    f"{_in(env)} cannot convert them (it has no {registry.get(src).label} classes); convert them "
                    f"under transformers 4 first: parity convert PATH OUT --to {registry.base(weights.framework)}")
    return None


def _use_caches(fw: str, spec: LoadSpec, files: dict, env_versions: dict) -> None:
    """Point the spec at a cached conversion (or where to keep this one), and a framework that keeps
    compiled ops (Flax) at its compile cache. Conversions are keyed by the versions of the environment
    that runs them (``env_versions``)."""
    from parity.contracts import conversion_cache as cache

    base = cache.root() if spec.converted_from else None
    if base is not None:
        entry = cache.key(registry.base(fw), spec, files, env_versions)
        hit = cache.lookup(registry.base(fw), entry)
        if hit is not None:
            spec.cache_hit = str(hit)
        elif variants.dtype(spec.options) in (None, "float32"):  # the cache keeps float32 conversions only
            spec.cache_store = str(base / entry)
    if registry.get(fw).compile_cache:
        compile_dir = cache.compile_dir()
        spec.compile_cache = str(compile_dir) if compile_dir else None


def _check_max_length(cfg: CheckConfig, config: dict) -> None:
    """A batch longer than the position table fails inside every framework: the default length is fitted to
    it (said in ``cfg.chosen``), a --max-length the user gave is refused up front."""
    limit = config.get("max_position_embeddings", config.get("n_positions"))
    if not (isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < cfg.max_length):
        return
    if "max_length" in cfg.chosen:
        cfg.chosen["max_length"] = f"{limit}: the model's positions (--max-length defaults to {cfg.max_length})"
        cfg.max_length = limit
        return
    raise UsageError(f"--max-length {cfg.max_length} is longer than the model's {limit} positions "
                     "(max_position_embeddings in config.json)", f"pass --max-length {limit} or less")


def _labels(config: dict, limit: int = 50) -> dict | None:
    """The checkpoint's id2label (reports name the logits' classes with it), at most ``limit``."""
    labels = config.get("id2label")
    if not isinstance(labels, dict) or not labels:
        return None
    return {str(k): str(v) for k, v in list(labels.items())[:limit]}
