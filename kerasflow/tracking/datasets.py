"""The train/validation/test splits of a run as MLflow dataset inputs (``mlflow.data``).

Each split is logged with :meth:`MlflowClient.log_inputs` as a dataset whose
source is the data folder or file (or, for ``digits``, ``tfds:`` and
``synthetic:`` sources, the ``data.source`` string), whose digest is a hash of
the split's example keys and targets (so runs on different data, or on another
split of the same data, are told apart in the UI's Datasets column), whose
schema is the uint8 image tensor and the target the pipeline yields, and whose
profile holds the counts.

Example:
    >>> digests = log_datasets(tracker, cfg.data, prepared)   # doctest: +SKIP
    >>> digests["train"]
    '3f9a1c0d2b7e'
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import DatasetInput, InputTag
from mlflow.types import Schema, TensorSpec

SPLITS = ("train", "validation", "test")
# What the MLflow UI shows as each input's context.
CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}
DIGEST_TAG = "kerasflow.data.digest"
MAX_PROFILE_CLASSES = 50  # class counts beyond this many classes are summarised

# The target tensor each target kind yields per example: dtype and shape after the batch axis.
_TARGETS = {
    "class": ("int64", ()),
    "multi_hot": ("float32", ("K",)),
    "mask": ("int32", ("H", "W")),
    "boxes": ("float32", (-1, 4)),
}


class SplitDataset(MetaDataset):
    """A split's metadata (source, digest, schema) plus a profile of its counts."""

    def __init__(
        self,
        source: DatasetSource,
        name: str,
        digest: str,
        schema: TensorDatasetSchema,
        profile: dict[str, Any],
    ):
        self._tensor_schema = schema
        self._profile = profile
        super().__init__(source=source, name=name, digest=digest)

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    @property
    def schema(self) -> TensorDatasetSchema:
        return self._tensor_schema

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "digest": self.digest,
            "source": self.source.to_json(),
            "source_type": self.source._get_source_type(),
            "schema": json.dumps(self._tensor_schema.to_dict()),
            "profile": json.dumps(self._profile),
        }


def dataset_source(source: str) -> DatasetSource:
    """A local path as MLflow's ``local`` source; anything else as a ``code`` source."""
    path = Path(source).expanduser()
    if path.exists():
        return resolve_dataset_source(str(path.resolve()))
    return CodeDatasetSource({"kerasflow.data.source": source})


def split_digest(rows: list[tuple[str, str, Any]], source: str) -> str:
    """A 12-hex hash of the source and its ``(key, split, target)`` rows."""
    blob = json.dumps([source, sorted((str(k), str(t)) for k, _, t in rows)]).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _schema(data_config, target: str) -> TensorDatasetSchema:
    h, w = data_config.image_size
    image = TensorSpec(np.dtype("uint8"), (-1, h, w, int(data_config.channels)), "image")
    dtype, shape = _TARGETS.get(target, ("int64", ()))
    dims = tuple({"H": h, "W": w}.get(d, -1) if isinstance(d, str) else d for d in shape)
    return TensorDatasetSchema(
        features=Schema([image]), targets=Schema([TensorSpec(np.dtype(dtype), (-1, *dims), target)])
    )


def _profile(prepared, split: str, rows: list[tuple[str, str, Any]]) -> dict[str, Any]:
    names = list(getattr(prepared, "class_names", []) or [])
    profile: dict[str, Any] = {"num_examples": int(prepared.size(split)), "num_classes": len(names)}
    target = getattr(prepared, "target", "class")
    counts: Counter = Counter()
    for _, _, value in rows:
        if target == "class":
            counts[names[int(value)] if int(value) < len(names) else str(value)] += 1
        elif target == "multi_hot":
            counts.update(v for v in str(value).split("|") if v)
        elif target == "boxes":
            counts["boxes"] += int(value)
    if counts:
        top = dict(counts.most_common(MAX_PROFILE_CLASSES))
        profile["counts"] = top
        if len(counts) > len(top):
            profile["counts_left_out"] = len(counts) - len(top)
    return profile


def split_datasets(data_config, prepared) -> dict[str, SplitDataset]:
    """The non-empty splits of ``prepared`` as :class:`SplitDataset` objects."""
    table = prepared.split_table()
    target = getattr(prepared, "target", "class")
    source = dataset_source(data_config.source)
    schema = _schema(data_config, target)
    base = Path(data_config.source).name or data_config.source
    out = {}
    for split in SPLITS:
        if not prepared.size(split):
            continue
        rows = [r for r in table if r[1] == split]
        digest = (
            split_digest(rows, data_config.source)
            if rows
            else _stream_digest(data_config, split, prepared.size(split))
        )
        out[split] = SplitDataset(
            source, f"{base}:{split}", digest, schema, _profile(prepared, split, rows)
        )
    return out


def _stream_digest(data_config, split: str, size: int) -> str:
    # Streams (TFRecord, TFDS) have no per-example table: their name, split and size.
    blob = json.dumps([data_config.source, split, size]).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def data_digest(datasets: dict[str, SplitDataset]) -> str:
    """One 12-hex digest of every split's digest: the data a run trained and tested on."""
    blob = json.dumps({s: d.digest for s, d in sorted(datasets.items())}).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def log_datasets(tracker, data_config, prepared) -> dict[str, str]:
    """Log each split of ``prepared`` as a dataset input of the tracker's run.

    Returns ``{split: digest}`` plus ``"all"`` (:func:`data_digest`), which is
    also set as the run tag ``kerasflow.data.digest``; empty when tracking is off.
    """
    if not tracker.enabled:
        return {}
    datasets = split_datasets(data_config, prepared)
    inputs = [
        DatasetInput(
            ds._to_mlflow_entity(),
            tags=[InputTag("mlflow.data.context", CONTEXTS[split])],
        )
        for split, ds in datasets.items()
    ]
    tracker.client.log_inputs(tracker.run_id, datasets=inputs)
    digests = {split: ds.digest for split, ds in datasets.items()}
    digests["all"] = data_digest(datasets)
    tracker.set_tags({DIGEST_TAG: digests["all"]})
    return digests
