"""The batch as it crosses to a worker: an npz of input arrays (written by parity.planning.batch), and the
tokenizer files that say a folder can decode what a worker generated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "spiece.model", "sentencepiece.bpe.model", "merges.txt")


def has_tokenizer(path) -> bool:
    return any((Path(path) / f).is_file() for f in TOKENIZER_FILES)


def load_arrays(path: Path) -> dict:
    """The batch file's arrays, read whole (the file is closed before they are used)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
