"""A weight export as it crosses from a worker: ``{canonical name: numpy array}`` in an npz
(names may hold dots: npz keys allow them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save(weights: dict, path) -> Path:
    """Write an export as npz atomically (names may hold dots: npz keys allow them)."""
    from parity.contracts.atomic import write_npz_atomic

    return write_npz_atomic(path, weights)


def load(path):
    """The export as a read-only mapping whose arrays are read when asked (np.load's NpzFile): comparing two
    exports of a 1.1B-parameter model holds two tensors at a time, not both models."""
    return np.load(path)
