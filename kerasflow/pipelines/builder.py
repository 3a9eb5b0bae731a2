"""The plan builder: puts the tf.data steps in the right order for each split.

read -> decode -> deterministic ops -> cache -> shuffle -> random augment
-> batch -> batch ops -> prefetch. Validation and test never get random
augmentation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import splits as splits_lib
from kerasflow.pipelines.sources import SourceData, load_source
from kerasflow.pipelines.transforms import augmentation_layers, preprocess

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class PreparedData:
    """A loaded source with its split assignment; builds datasets per split."""

    data_config: object
    source: SourceData
    indices: dict[str, np.ndarray]
    seed: int = 0

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return len(self.source.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = self.data_config.image_size
        return (h, w, self.data_config.channels)

    def size(self, split: str) -> int:
        return int(len(self.indices[split]))

    def split_table(self) -> list[tuple[str, str, int]]:
        """(key, split, label) rows: the assignment logged with each run."""
        rows = []
        for split, idx in self.indices.items():
            rows.extend((self.source.keys[i], split, int(self.source.labels[i])) for i in idx)
        return sorted(rows)

    def labels(self, split: str) -> np.ndarray:
        return self.source.labels[self.indices[split]]

    def dataset(self, split: str, training: bool | None = None, batch: bool = True) -> tf.data.Dataset:
        """The ``tf.data.Dataset`` of ``(image, label)`` batches for one split.

        Args:
            split: ``train``, ``validation`` or ``test``.
            training: shuffle and augment; defaults to ``split == "train"``.
            batch: batch and prefetch (False gives single examples).
        """
        if split not in self.indices:
            raise DataError(f"Unknown split {split!r}. Choose one of: {', '.join(self.indices)}.")
        cfg = self.data_config
        training = (split == "train") if training is None else training
        idx = self.indices[split]
        if len(idx) == 0:
            raise DataError(
                f"Split {split!r} of data.source {cfg.source!r} is empty. "
                "Adjust data.split fractions or add data."
            )
        images = self.source.images[idx]
        labels = self.source.labels[idx]
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        ds = ds.map(
            lambda x, y: (preprocess(x, cfg), y),
            num_parallel_calls=AUTOTUNE,
            deterministic=cfg.deterministic,
        )
        if cfg.cache:
            ds = ds.cache() if cfg.cache is True else ds.cache(str(cfg.cache) + f".{split}")
        if training and cfg.shuffle_buffer:
            ds = ds.shuffle(
                min(cfg.shuffle_buffer, len(idx)), seed=self.seed, reshuffle_each_iteration=True
            )
        if not batch:
            return ds
        ds = ds.batch(cfg.batch_size, drop_remainder=False)
        if training:
            aug = augmentation_layers(cfg.augment, self.seed)
            if aug:
                def _augment(x, y):
                    for layer in aug:
                        x = layer(x, training=True)
                    return x, y

                ds = ds.map(_augment, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
        return ds.prefetch(AUTOTUNE)


def prepare(data_config, seed: int = 0) -> PreparedData:
    """Load the source once and assign splits."""
    source = load_source(data_config)
    indices = splits_lib.assign_splits(
        source.keys, source.labels, data_config.split, seed=seed, stratify=data_config.split.stratify
    )
    log.info(
        "data %s: %s", data_config.source, {k: int(len(v)) for k, v in indices.items()}
    )
    return PreparedData(data_config=data_config, source=source, indices=indices, seed=seed)


def build(data_config, split: str = "train", seed: int = 0, training: bool | None = None) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(image, label)`` for one split.

    Example:
        >>> import kerasflow
        >>> cfg = kerasflow.load_config()
        >>> ds = kerasflow.pipelines.build(cfg.data, "train")
    """
    return prepare(data_config, seed).dataset(split, training=training)
