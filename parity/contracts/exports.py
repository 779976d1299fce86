"""A weight export as it crosses from a worker: ``{canonical name: numpy array}`` in an npz
(names may hold dots: npz keys allow them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save(weights: dict, path) -> Path:
    """Write an export as npz atomically (names may hold dots: npz keys allow them)."""
    from parity.contracts.atomic import write_npz_atomic

    return write_npz_atomic(path, weights)


def load(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
