"""Golden baselines: record outputs in one environment, compare in another.

A baseline is a folder:

    baseline.json         schema, checkpoint fingerprint, task, config, environment,
                          inputs description, per framework the outputs kept
    inputs.npz            the exact batch that was run (fed back unchanged by compare)
    outputs-<fw>.npz      float32 outputs per framework, names as in results.json

``parity compare`` runs the current environment on inputs.npz and judges each
framework against its own recorded outputs with the usual tolerance rule, so
an upgrade that drops TF and Flax can still be checked with PyTorch alone.
"""

from __future__ import annotations

import json
import os
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from parity.contracts.atomic import publish_dir, temp_dir
from parity.planning.config import CheckConfig
from parity.contracts.errors import UsageError
from parity.contracts.outputs import GROUPS, group

SCHEMA_VERSION = 1
KIND = "parity-baseline"
META = "baseline.json"
INPUTS = "inputs.npz"


def outputs_file(fw: str) -> str:
    return f"outputs-{fw}.npz"


def estimate_bytes(config: dict, task: str, shape, groups, n_frameworks: int) -> int:
    """float32 bytes the recorded outputs will take (from the model config, before running)."""
    b, t = (list(shape) + [1, 1])[:2]
    hidden = int(config.get("hidden_size") or config.get("d_model") or 0)
    layers = int(config.get("num_hidden_layers") or config.get("num_layers") or 0)
    heads = int(config.get("num_attention_heads") or config.get("num_heads") or 0)
    labels = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    vocab = int(config.get("vocab_size") or 0)
    per = 0
    if "hidden_states" in groups:
        per += (layers + 1) * b * t * hidden
    if "attentions" in groups:
        per += layers * b * heads * t * t
    if "logits" in groups:
        per += {"sequence-classification": b * labels, "token-classification": b * t * labels,
                "question-answering": 2 * b * t, "multiple-choice": b * labels,
                "masked-lm": b * t * vocab, "causal-lm": b * t * vocab, "pretraining": b * t * vocab + 2 * b,
                "next-sentence-prediction": 2 * b}.get(task, b * t * hidden + b * hidden)
    return 4 * per * n_frameworks


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def record(cfg: CheckConfig, out, *, say=print):
    """Run ``cfg`` and write the baseline folder ``out``; returns (Results, bytes written).

    The batch is built here first so that the size estimate can be printed
    before any framework loads. Written to a temp folder, then renamed: a
    failed run leaves nothing half-written.
    """
    from parity.planning import batch as inputs, tasks
    from parity.planning.checkpoint import Checkpoint

    out = Path(out)
    if out.exists() and not (out / META).is_file():
        raise UsageError(f"{out} exists and is not a parity baseline", "pass --out with a new folder")
    ckpt = Checkpoint.open(cfg.path)
    task, _ = tasks.resolve(ckpt.config, cfg.task, cfg.frameworks, cfg.reference, min_frameworks=1)
    batch = inputs.build(ckpt.path, ckpt.config, texts=cfg.texts, texts_file=cfg.texts_file,
                         batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    shape = batch.describe()["shapes"].get("input_ids") or next(iter(batch.describe()["shapes"].values()))
    est = estimate_bytes(ckpt.config, task, shape, cfg.outputs, len(cfg.frameworks))
    say(f"baseline size estimate: {human(est)} ({len(cfg.frameworks)} framework(s) x outputs "
        f"{','.join(cfg.outputs)}, inputs {list(shape)}, float32)")

    with temp_dir(out, f".{out.name}.{os.getpid()}.partial") as tmp:
        results = _record_into(tmp, cfg, batch)
        publish_dir(tmp, out, replace=True)
    size = sum(f.stat().st_size for f in out.iterdir())
    return results, size


def _record_into(tmp: Path, cfg: CheckConfig, batch):
    """Run the check and write the baseline's files into the folder ``tmp``; returns the Results."""
    from parity.api import run_check

    kept: dict[str, list] = {}

    def keep(fw, outputs):
        names = [n for n in outputs if group(n) in cfg.outputs]
        np.savez(tmp / outputs_file(fw), **{n: np.asarray(outputs[n], dtype=np.float32) for n in names})
        kept[fw] = names

    single = len(cfg.frameworks) < 2
    results = run_check(cfg, batch=batch, baseline={} if single else None, on_outputs=keep)
    np.savez(tmp / INPUTS, **batch.arrays)
    meta = {
        "schema_version": SCHEMA_VERSION, "kind": KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": results.task, "checkpoint": {**results.checkpoint, "abs_path": str(Path(cfg.path).resolve())},
        "inputs": results.inputs,
        "environment": results.environment, "config": results.config, "outputs": list(cfg.outputs),
        "frameworks": {fw: {**{k: e.get(k) for k in ("status", "class_name", "weights", "converted_from",
                                                       "via", "device")},
                            "file": outputs_file(fw) if fw in kept else None, "outputs": kept.get(fw, [])}
                       for fw, e in results.frameworks.items()},
    }
    if not kept:
        raise UsageError("no framework produced outputs, nothing to record",
                         "see the framework errors above (or run parity check) and fix them first")
    (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return results


class Baseline:
    """A recorded baseline folder, checked on open."""

    def __init__(self, folder: Path, meta: dict):
        self.folder = folder
        self.meta = meta

    @classmethod
    def open(cls, folder) -> "Baseline":
        folder = Path(folder)
        f = folder / META
        if not folder.is_dir() or not f.is_file():
            raise UsageError(f"{folder} is not a parity baseline (no {META})",
                             "pass a folder written by `parity record --out`")
        try:
            meta = json.loads(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"baseline {f} is corrupt (not valid JSON: {str(e).splitlines()[0]})",
                             "record it again with `parity record`") from None
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            raise UsageError(f"{f} is not a parity baseline file", "pass a folder written by `parity record --out`")
        version = meta.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise UsageError(f"baseline schema_version {version!r} is not valid", "record it again with `parity record`")
        if version > SCHEMA_VERSION:
            raise UsageError(f"baseline schema_version {version} is newer than this parity understands "
                             f"({SCHEMA_VERSION})", "upgrade parity to compare against it, or record it again")
        missing = [n for n in [INPUTS] + [e["file"] for e in meta.get("frameworks", {}).values() if e.get("file")]
                   if not (folder / n).is_file()]
        if missing:
            raise UsageError(f"baseline {folder} is incomplete ({missing[0]} is missing)",
                             "record it again with `parity record`")
        self = cls(folder, meta)
        self.inputs()  # a corrupt npz fails here, before any framework starts
        return self

    @property
    def recorded(self) -> list[str]:
        return [fw for fw, e in self.meta["frameworks"].items() if e.get("file")]

    def _npz(self, name: str) -> dict:
        p = self.folder / name
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise UsageError(f"baseline file {p} is corrupt ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                             "record it again with `parity record`") from None

    def inputs(self) -> dict:
        return self._npz(INPUTS)

    def outputs(self, fw: str) -> dict:
        return self._npz(self.meta["frameworks"][fw]["file"])

    def batch(self):
        from parity.planning.batch import Batch

        inp = self.meta.get("inputs", {})
        arrays = self.inputs()
        return Batch(arrays, inp.get("source", "recorded"), inp.get("seed", 0),
                     texts=inp.get("texts"), tokenizer=inp.get("tokenizer"),
                     modality=inp.get("modality", "text"), seq2seq="decoder_input_ids" in arrays)


def compare(baseline: Baseline, *, path=None, frameworks=None, atol=None, rtol=None, tolerances=None,
            report_dir=None, inline=False, device=None, explain=False, save=True, against=None, envs=None):
    """Run the current environment on the recorded inputs; judge each framework against its recording.

    ``against``: a recorded framework every running one is judged against instead (a TF recording
    made under transformers 4, compared with PyTorch under 5). ``envs`` as CheckConfig's: ``pt@v5``
    runs under that interpreter and is judged against the pt recording. With neither ``frameworks``
    nor ``against``, the recorded frameworks that cannot run here are not in this environment (no
    failure): each one that runs is judged against its own recording and theirs (``baseline_plan``).
    """
    from parity.api import run_check

    chosen, sources, note = baseline_plan(baseline, frameworks, against)
    rec = baseline.meta["config"]
    cfg = CheckConfig(
        path=str(path or baseline.meta["checkpoint"].get("abs_path") or baseline.meta["checkpoint"]["path"]), task=baseline.meta["task"], frameworks=chosen,
        reference=chosen[0], source=rec.get("source", "auto"), max_length=rec.get("max_length", 64),
        seed=rec.get("seed", 0), device=device or rec.get("device", "auto"),
        atol=rec.get("atol") if atol is None else atol, rtol=rec.get("rtol") if rtol is None else rtol,
        tolerances=rec.get("tolerances") if tolerances is None else tolerances,
        outputs=[g for g in baseline.meta.get("outputs", GROUPS)], report_dir=report_dir, inline=inline,
        explain=explain, envs=envs or {},
    ).validated(min_frameworks=1)
    if note:
        cfg.chosen["frameworks"] = note
    batch = baseline.batch()
    check_inputs_fit(batch.arrays, cfg.path, baseline.meta)
    recorded = {fw: {src: baseline.outputs(src) for src in sources[fw]} for fw in cfg.frameworks}
    return run_check(cfg, batch=batch, baseline=recorded, save=save)


def baseline_plan(baseline: Baseline, frameworks=None, against=None) -> tuple[list, dict, str | None]:
    """(frameworks to run, {framework: the recordings it is judged against}, what was chosen and why)."""
    from parity.contracts import registry
    from parity.contracts.versions import unavailable_reason

    if against is not None:
        against = registry.canonical(against)
        if against not in baseline.recorded:
            raise UsageError(f"--against {against}: the baseline has no {against} outputs (recorded: "
                             f"{', '.join(baseline.recorded)})", "pass --against with a recorded framework")
    if frameworks is None and against is None:
        # The recorded frameworks that run here, else the default one that does (PyTorch under transformers 5
        # after a TF and Flax recording under 4.57): each judged against its own recording, if any, and
        # against every recording whose framework cannot run here.
        why = {fw: unavailable_reason(fw) for fw in dict.fromkeys(baseline.recorded + list(registry.DEFAULT_KEYS))}
        away = [fw for fw in baseline.recorded if why[fw]]
        here = [fw for fw in baseline.recorded if not why[fw]] \
            or [fw for fw in registry.DEFAULT_KEYS if not why[fw]][:1]
        if not here:
            raise UsageError("no framework can run here: " + "; ".join(f"{fw}: {why[fw]}" for fw in why if why[fw]),
                             "install one (parity[torch]), or pass --frameworks FW@ENV with --env")
        note = None if not away else (
            f"{', '.join(here)}: {registry.spoken(away)} recorded but not in this environment ("
            + "; ".join(f"{fw}: {why[fw].split(' (')[0]}" for fw in away)
            + f"), so {registry.spoken(here)} is judged against {'their recordings' if len(away) > 1 else 'its recording'}"
            + (" too" if set(here) & set(baseline.recorded) else ""))
        return here, {fw: [fw] * (fw in baseline.recorded) + away for fw in here}, note
    chosen = frameworks or baseline.recorded
    if isinstance(chosen, str):
        chosen = [f.strip() for f in chosen.split(",") if f.strip()]
    chosen = [registry.canonical(f) for f in chosen]
    sources = {fw: [against or registry.base(fw)] for fw in chosen}
    not_recorded = [src for srcs in sources.values() for src in srcs if src not in baseline.recorded]
    if not_recorded:
        raise UsageError(f"the baseline has no {not_recorded[0]} outputs (recorded: {', '.join(baseline.recorded)})",
                         "pass --frameworks with recorded frameworks only, or --against a recorded one")
    return chosen, sources, None


def check_inputs_fit(arrays: dict, path: str, meta: dict) -> None:
    """Refuse a checkpoint the recorded inputs cannot be fed to (another model, a smaller
    vocabulary or position table) before any framework loads: the run would fail inside
    every framework, or worse, index out of range silently on some."""
    from parity.planning.checkpoint import Checkpoint

    config = Checkpoint.open(path).config
    fix = "pass --checkpoint with the checkpoint the baseline was recorded from, or record a new baseline"
    was = (meta.get("checkpoint") or {}).get("model_type")
    now = config.get("model_type")
    if was and now and was != now:
        raise UsageError(f"the baseline's inputs were recorded for a {was} model, but {path} is {now}", fix)
    ids = arrays.get("input_ids")
    vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    if ids is not None and isinstance(vocab, int) and ids.size and int(ids.max()) >= vocab:
        raise UsageError(f"the baseline's inputs do not match {path}: token id {int(ids.max())} is outside "
                         f"its vocabulary of {vocab}", fix)
    limit = config.get("max_position_embeddings")
    if ids is not None and isinstance(limit, int) and ids.shape[-1] > limit:
        raise UsageError(f"the baseline's inputs do not match {path}: {ids.shape[-1]} tokens per row, more than "
                         f"its {limit} positions", fix)
