"""`--save-replay DIR` and `parity replay DIR`: rerun exactly one case.

DIR holds the exact batch (batch.npz), the resolved options, the versions and
checkpoint fingerprint of the run, and the one-line command that reruns it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np

from parity.contracts.atomic import write_atomic
from parity.planning.config import CheckConfig
from parity.contracts.errors import UsageError
from parity.contracts.batch import load_arrays
from parity.planning.batch import Batch

REPLAY_VERSION = 1


def save(folder: Path, cfg: CheckConfig, batch: Batch, results) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    batch.save(folder / "batch.npz")
    meta = {"replay_version": REPLAY_VERSION, "config": cfg.to_dict(),
            "batch": {k: v for k, v in batch.describe().items()},
            "environment": results.environment, "fingerprint": results.checkpoint["fingerprint"],
            "command": f"parity replay {shlex.quote(str(folder))}"}
    write_atomic(folder / "replay.json", json.dumps(meta, indent=2) + "\n")
    (folder / "command.txt").write_text(meta["command"] + "\n")


def load(folder: Path) -> tuple[CheckConfig, Batch, dict]:
    meta_path = Path(folder) / "replay.json"
    if not meta_path.is_file():
        raise UsageError(f"{folder} holds no replay.json", "pass a folder written by parity check --save-replay DIR")
    try:
        meta = json.loads(meta_path.read_text())
        arrays = load_arrays(Path(folder) / "batch.npz")
    except (ValueError, OSError) as e:
        raise UsageError(f"replay in {folder} is unreadable ({e})", "save it again with --save-replay") from None
    if meta.get("replay_version") != REPLAY_VERSION:
        raise UsageError(f"replay version {meta.get('replay_version')!r} is not {REPLAY_VERSION}",
                         "save it again with this parity's --save-replay")
    fields = set(CheckConfig.__dataclass_fields__)
    cfg = CheckConfig(**{k: v for k, v in meta["config"].items() if k in fields})
    cfg.save_replay = None
    b = meta["batch"]
    batch = Batch({k: np.asarray(v) for k, v in arrays.items()}, b.get("source", "replay"), b.get("seed", 0),
                  texts=b.get("texts"), tokenizer=b.get("tokenizer"))
    return cfg.validated(), batch, meta
