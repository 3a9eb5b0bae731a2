"""The resume backup (Keras' ``BackupAndRestore`` folder): checked before a run resumes.

Keras writes ``latest.weights.h5`` and ``training_metadata.json`` after every
epoch and, with ``double_checkpoint``, keeps the epoch before as ``*.bkp``.
A kill while it writes, a full disk or a copy gone wrong can leave either
file truncated. :func:`restore_point` checks both before any MLflow run is
resumed: a broken latest pair falls back to the previous pair (logged; the
MLflow callback never logs an epoch twice, so the epoch trained again adds no
metrics), and with no consistent pair the run stops with one line that names
the folder and says how to start over.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import h5py

from kerasflow.errors import DataError

log = logging.getLogger(__name__)

WEIGHTS = "latest.weights.h5"
METADATA = "training_metadata.json"
PREVIOUS = ".bkp"  # Keras' suffix for the epoch before


def _epoch(meta: Path, weights: Path) -> tuple[int | None, str]:
    """``(epoch, "")`` when the pair is readable, else ``(None, why)``."""
    if not meta.is_file():
        return None, f"{meta.name} is missing"
    try:
        data = json.loads(meta.read_text())
        epoch = int(data["epoch"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, f"{meta.name} is unreadable ({type(exc).__name__}: {exc})"
    if not weights.is_file():
        return None, f"{weights.name} is missing"
    try:
        with h5py.File(weights, "r") as f:
            f.visititems(lambda _, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        return None, f"{weights.name} is unreadable ({type(exc).__name__}: {exc})"
    return epoch, ""


def restore_point(backup_dir: Path) -> int:
    """The number of finished epochs the backup in ``backup_dir`` resumes from (0: no backup).

    Raises:
        DataError: neither the latest nor the previous epoch's files are readable.
    """
    latest = (backup_dir / METADATA, backup_dir / WEIGHTS)
    previous = tuple(p.with_name(p.name + PREVIOUS) for p in latest)
    if not any(p.exists() for p in (*latest, *previous)):
        return 0
    epoch, why = _epoch(*latest)
    if epoch is not None:
        return epoch
    before, why_before = _epoch(*previous)
    if before is None:
        raise DataError(
            f"The resume backup in {backup_dir} is broken: {why}; the previous epoch's copy: "
            f"{why_before}. Start this run over with `kerasflow train --restart` (or delete "
            f"{backup_dir})."
        )
    log.warning(
        "the resume backup in %s is broken (%s); falling back to the previous epoch's copy "
        "(%d epochs done). That epoch is trained again; its metrics are not logged twice.",
        backup_dir,
        why,
        before,
    )
    for src, dst in zip(previous, latest, strict=True):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return before


def discard(backup_dir: Path) -> None:
    """Remove the backup (after a run's fit has finished, or on ``--restart``)."""
    shutil.rmtree(backup_dir, ignore_errors=True)
