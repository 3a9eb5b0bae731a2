"""Stable train/validation/test assignment.

An example's split depends only on a hash of its key (and the seed), so adding
files never moves an existing file to another split.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "validation", "test")


def stable_unit(key: str, seed: int = 0) -> float:
    """Map a key to a number in [0, 1) that never changes for that key and seed."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(keys, labels, fractions, seed: int = 0, stratify: bool = True) -> dict[str, np.ndarray]:
    """Indices of each split.

    Without ``stratify`` each key goes by its hash against the cumulative
    fractions. With ``stratify`` the hash is used as a rank inside each class,
    so every class gets its share (exact up to rounding); a new file then
    only takes a place in its own class, leaving others where they were
    unless a class boundary shifts by one rank.
    """
    fr = [fractions.train, fractions.validation, fractions.test]
    units = np.array([stable_unit(k, seed) for k in keys])
    labels = np.asarray(labels)
    out = {s: [] for s in SPLITS}
    for cls in np.unique(labels) if stratify else [None]:
        idx = np.arange(len(keys)) if cls is None else np.flatnonzero(labels == cls)
        if stratify:
            order = idx[np.argsort(units[idx], kind="stable")]
            position = (np.arange(len(order)) + 0.5) / len(order)
        else:
            order, position = idx, units[idx]
        bounds = np.cumsum(fr)
        which = np.searchsorted(bounds, position, side="right").clip(0, 2)
        for s_i, s in enumerate(SPLITS):
            out[s].extend(order[which == s_i].tolist())
    return {s: np.array(sorted(v), dtype=np.int64) for s, v in out.items()}
