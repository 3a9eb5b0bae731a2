"""Stable train/validation/test assignment.

An example's split depends only on a hash of its key (and the seed), so adding
files never moves an existing file to another split.
"""

from __future__ import annotations

import hashlib

import numpy as np

from kerasflow.errors import DataError

SPLITS = ("train", "validation", "test")


def stable_unit(key: str, seed: int = 0) -> float:
    """Map a key to a number in [0, 1) that never changes for that key and seed."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def multi_hot_strata(labels: np.ndarray) -> np.ndarray:
    """One stratum per multi-label example: the id of its rarest label, -1 for no label.

    Rarity is the label's count over all examples (ties: the lower id). Each
    label's examples then spread over the splits at least through the
    examples for which it is the rarest, which keeps rare labels in every
    split; common labels follow from the many examples that hold them.

    Example:
        >>> multi_hot_strata(np.array([[1, 1], [1, 0], [0, 0]]))
        array([ 1,  0, -1])
    """
    labels = np.asarray(labels) > 0
    counts = labels.sum(axis=0)
    # Absent labels rank last; among present ones the rarest (lowest count) wins.
    score = np.where(labels, counts[None, :], np.iinfo(np.int64).max)
    rarest = np.argmin(score, axis=1) if labels.shape[1] else np.zeros(len(labels), np.int64)
    return np.where(labels.any(axis=1), rarest, -1)


def assign_splits(
    keys, labels, fractions, seed: int = 0, stratify: bool = False
) -> dict[str, np.ndarray]:
    """Indices of each split.

    Without ``stratify`` each key goes by its hash against the cumulative
    fractions. With ``stratify`` the hash is used as a rank inside each class,
    so every class gets its share (exact up to rounding); a new file then
    only takes a place in its own class, leaving others where they were
    unless a class boundary shifts by one rank. Multi-label ``(n, K)`` labels
    are stratified by each example's rarest label (:func:`multi_hot_strata`).
    """
    fr = [fractions.train, fractions.validation, fractions.test]
    units = np.array([stable_unit(k, seed) for k in keys])
    labels = np.asarray(labels)
    if stratify and labels.ndim == 2:
        labels = multi_hot_strata(labels)
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


def resolve_mode(source, split_config) -> str:
    """``source`` or ``fractions`` for this source (``auto``: source splits where they exist)."""
    has_parts = source.parts is not None and any(source.parts)
    mode = split_config.mode
    if mode == "auto":
        return "source" if has_parts else "fractions"
    if mode == "source" and not has_parts:
        raise DataError(
            f"data.split.mode is 'source' but {source.name!r} has no splits of its own. "
            "Use mode: fractions (or auto)."
        )
    return mode


def assign(source, split_config, seed: int = 0) -> dict[str, np.ndarray]:
    """Indices (into the source's examples) of train, validation and test.

    With the source's own splits, each kerasflow split takes the examples of
    the part named in ``split.source_names``; a validation part the source
    lacks is carved from train: the examples whose key hashes below the
    ``validation`` fraction.
    """
    if resolve_mode(source, split_config) == "fractions":
        return assign_splits(
            source.keys, source.labels, split_config, seed=seed, stratify=split_config.stratify
        )
    parts = np.array(source.parts)
    names = split_config.source_names
    out = {s: np.flatnonzero(parts == names.get(s, s)) for s in SPLITS}
    if "validation" not in names or not len(out["validation"]):
        train = out["train"]
        units = np.array([stable_unit(source.keys[i], seed) for i in train])
        out["validation"] = train[units < split_config.validation]
        out["train"] = train[units >= split_config.validation]
    return {s: np.sort(v).astype(np.int64) for s, v in out.items()}
