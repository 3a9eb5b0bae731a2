"""Detection data (``boxes`` targets): a loaded box source with its splits, and its tf.data pipelines.

``prepare_detection(data_config, seed)`` reads the source named by
``data.source`` once and returns a :class:`DetectionData`, whose
``dataset(split)`` gives ``(image, {"boxes": [M, 4], "classes": [M]})``
elements, boxes padded to ``data.detection.max_boxes`` with class ``-1``
(box format: :mod:`kerasflow.pipelines.box_ops`). The detection trainer passes
``targets_fn`` to turn the boxes into the model's dense training targets inside
the same map.

Sources (``data.source``):
    * a COCO ``.json`` annotation file; ``file_name`` is relative to
      ``data.root`` (default: the JSON's folder). Crowd boxes are ignored.
    * a Pascal VOC folder with ``Annotations/*.xml`` and ``JPEGImages/``.
      ``difficult`` objects are ignored.
    * ``tfds:<name>[:<version>]`` with an ``objects`` feature of normalised
      ``bbox`` and ``label`` (``voc``, ``coco/2017``); splits come from the
      dataset (``data.split.source_names``).
    * ``synthetic:shapes_detection``: shapes on textured backgrounds, written
      once as a COCO set under ``data.root`` (see
      :func:`kerasflow.pipelines.synthetic.write_shapes_detection`).

The readers live in :mod:`kerasflow.pipelines.sources` (``coco``, ``voc``,
``tfds``, ``boxes``); this module splits what they read and builds the
pipelines.

Bad annotations (a box outside the image, a negative or zero width or
height, an unknown class, a missing image file) raise :class:`DataError`
naming the file and the value, or with ``data.on_bad_image: skip`` skip that
image and count it in :attr:`DetectionData.skipped`.

Pipeline of a split: read -> decode -> letterbox (``data.resize``: pad or
stretch) -> cache (uint8) -> shuffle -> random crop/scale, flips, photometric
ops (training only) -> pad boxes -> targets -> batch -> prefetch. Images stay
uint8 pixels; the detector's first layer applies ``data.normalize`` (as for
classification and segmentation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import box_ops
from kerasflow.pipelines import transforms as T
from kerasflow.pipelines.augment import describe_op
from kerasflow.pipelines.builder import PreparedData
from kerasflow.pipelines.plan import AUTOTUNE, Step
from kerasflow.pipelines.sources import (
    DetectionSource,
    load_detection_source,
    load_tfds_detection,
)
from kerasflow.pipelines.splits import SPLITS, assign_splits

log = logging.getLogger(__name__)


@dataclass
class DetectionData:
    """A loaded detection source with its splits; builds a dataset per split."""

    data_config: object
    seed: int
    class_names: list[str]
    source: DetectionSource | None = None
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    streams: dict[str, tuple] = field(default_factory=dict)  # split -> (open_fn, size)
    target: str = "boxes"  # the target kind, beside class, mask and multi_hot

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = self.data_config.image_size
        return (int(h), int(w), int(self.data_config.channels))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return list(self.source.skipped) if self.source else []

    @property
    def ignored(self) -> dict[str, int]:
        return dict(self.source.ignored) if self.source else {}

    def size(self, split: str) -> int:
        if self.source is not None:
            return len(self.indices.get(split, ()))
        return int(self.streams[split][1]) if split in self.streams else 0

    def split_table(self) -> list[tuple[str, str, int]]:
        """``(key, split, number of boxes)`` of every file example."""
        if self.source is None:
            return []
        return [
            (self.source.keys[i], s, len(self.source.classes[i]))
            for s in SPLITS
            for i in self.indices.get(s, ())
        ]

    def raw(self, split: str) -> tf.data.Dataset:
        """``(uint8 image, boxes [n, 4], classes [n])`` of a split, decoded, not resized."""
        channels = int(self.data_config.channels)
        if self.source is None:
            if split not in self.streams:
                raise DataError(f"The detection source has no {split} split.")
            return self.streams[split][0]()
        idx = self.indices.get(split, np.zeros(0, np.int64))
        src = self.source
        counts = np.array([len(src.classes[i]) for i in idx], np.int64)
        flat_boxes = np.concatenate([src.boxes[i] for i in idx] or [np.zeros((0, 4))], 0)
        flat_classes = np.concatenate([src.classes[i] for i in idx] or [np.zeros(0)], 0)
        boxes = tf.RaggedTensor.from_row_lengths(flat_boxes.astype(np.float32), counts)
        classes = tf.RaggedTensor.from_row_lengths(flat_classes.astype(np.int32), counts)
        paths = tf.constant([src.paths[i] for i in idx], tf.string, shape=[len(idx)])
        ds = tf.data.Dataset.from_tensor_slices((paths, boxes, classes))

        def read(path, b, c):
            image = T.decode_image(tf.io.read_file(path), channels, src.formats)
            return image, tf.reshape(tf.cast(b, tf.float32), [-1, 4]), tf.cast(c, tf.int32)

        return ds.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)

    def plan(self, split: str, training: bool | None = None, batch: bool = True) -> list[Step]:
        """The steps :meth:`dataset` runs for one split, described (for ``kerasflow data plan``)."""
        cfg, det = self.data_config, self.data_config.detection
        training = split == "train" if training is None else training
        size = tuple(int(v) for v in cfg.image_size)
        if self.source is not None:
            boxes = sum(len(self.source.classes[i]) for i in self.indices.get(split, ()))
            read = f"{self.size(split)} files of {self.source.name!r} ({boxes} boxes)"
            decode = f"decode_image to {cfg.channels} channel(s)"
        else:
            read = f"TFDS {cfg.source!r} split {cfg.split.source_names.get(split)!r}"
            decode = f"by TFDS; channels={cfg.channels}"
        mode = "pad" if cfg.resize == "pad" else "stretch"
        aa = ", antialias" if cfg.antialias else ""
        steps = [
            Step("read", read),
            Step("decode", decode),
            Step(
                "deterministic", f"letterbox {mode} to {size} ({cfg.interpolation}{aa}), boxes too"
            ),
        ]
        if not cfg.cache:
            steps.append(Step("cache", "off"))
        else:
            where = "in memory" if cfg.cache is True else f"file {cfg.cache}_{split}_det"
            steps.append(Step("cache", f"{where} (uint8 images)"))
        if training and cfg.shuffle_buffer:
            detail = f"buffer {cfg.shuffle_buffer}, seed {self.seed}, reshuffled every epoch"
            steps.append(Step("shuffle", detail))
        if training:
            ops = [] if det.crop_scale is None else [
                f"crop_scale {det.crop_scale} (box_policy {det.box_policy}, "
                f"min_visible {det.min_visible})"
            ]  # fmt: skip
            ops += [describe_op(op, cfg.augment) for op in cfg.augment.enabled()]
            detail = (
                "; ".join(ops) + " (image and boxes, in 0..1 float, then float32 0..255)"
                if ops
                else "none"
            )
            steps.append(
                Step("augment", f"per-example seed {self.seed}, fresh every epoch: {detail}")
            )
        steps.append(
            Step(
                "normalize",
                f"in the model: its first layer maps 0..255 pixels by {cfg.normalize}; "
                f"boxes padded to {det.max_boxes} (class -1)",
            )
        )
        if batch:
            steps.append(Step("batch", f"batch_size {cfg.batch_size}"))
        steps.append(Step("prefetch", "AUTOTUNE"))
        return steps

    # The same text as classification and segmentation: it needs only size() and plan().
    plan_text = PreparedData.plan_text

    def dataset(
        self,
        split: str,
        training: bool | None = None,
        batch: bool = True,
        targets_fn=None,
        with_window: bool = False,
    ) -> tf.data.Dataset:
        """The split's pipeline.

        Args:
            training: random augmentation and shuffling (default: ``split == "train"``).
            batch: batch by ``data.batch_size``.
            targets_fn: ``(boxes [M, 4], classes [M]) -> target`` replacing the box dict.
            with_window: add the letterbox ``window`` to the box dict (serving checks).
        """
        cfg = self.data_config
        det = cfg.detection
        training = split == "train" if training is None else training
        size = tuple(int(v) for v in cfg.image_size)
        mode = "pad" if cfg.resize == "pad" else "stretch"

        def fit_size(image, boxes, classes):
            image, boxes, window = box_ops.letterbox(
                image, boxes, size, mode, interpolation=cfg.interpolation, antialias=cfg.antialias
            )
            return image, boxes, classes, window

        ds = self.raw(split).map(fit_size, num_parallel_calls=AUTOTUNE, deterministic=True)
        if cfg.cache:
            ds = ds.cache() if cfg.cache is True else ds.cache(f"{cfg.cache}_{split}_det")
        if training and cfg.shuffle_buffer:
            ds = ds.shuffle(cfg.shuffle_buffer, seed=self.seed, reshuffle_each_iteration=True)
        aug = cfg.augment
        ops = set(aug.enabled()) if training else set()

        def augment(element, seed):
            image, boxes, classes, window = element
            image = T.to_unit(image)
            seeds = T.split_seed(seed, 4)
            if det.crop_scale is not None:
                image, boxes, classes = box_ops.random_crop_scale(
                    image, boxes, classes, seeds[0], det.crop_scale, det.box_policy, det.min_visible
                )
            if "horizontal_flip" in ops:
                image, boxes = box_ops.random_flip(image, boxes, seeds[1], horizontal=True)
            if "vertical_flip" in ops:
                image, boxes = box_ops.random_flip(image, boxes, seeds[2], horizontal=False)
            image = box_ops.photometric(
                image, seeds[3], aug.brightness, aug.contrast, aug.saturation, aug.hue
            )
            return T.from_unit(image), boxes, classes, window

        def finish(image, boxes, classes, window):
            image.set_shape([size[0], size[1], int(cfg.channels)])
            boxes, classes = box_ops.pad_boxes(boxes, classes, det.max_boxes)
            if targets_fn is not None:
                return image, targets_fn(boxes, classes)
            target = {"boxes": boxes, "classes": classes}
            if with_window:
                target["window"] = window
            return image, target

        if training:
            seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip((ds, seeds.batch(2)))
            ds = ds.map(augment, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
        ds = ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
        if batch:
            ds = ds.batch(cfg.batch_size)
        return ds.prefetch(AUTOTUNE)


BOX_AWARE_OPS = ("horizontal_flip", "vertical_flip", "brightness", "contrast", "saturation", "hue")


def check_detection_options(data_config) -> None:
    """Reject ``data`` options that would move pixels without their boxes."""
    other = [op for op in data_config.augment.enabled() if op not in BOX_AWARE_OPS]
    if other:
        raise DataError(
            f"data.augment {', '.join(other)} cannot move boxes; detection supports "
            f"{', '.join(BOX_AWARE_OPS)} and data.detection.crop_scale (random crop and zoom). "
            f"Remove {', '.join(other)}."
        )
    if data_config.center_crop:
        raise DataError(
            f"data.center_crop ({data_config.center_crop}) would cut boxes; detection does not "
            "support it. Remove data.center_crop."
        )
    if data_config.resize == "crop":
        raise DataError(
            "data.resize: crop would cut boxes; detection supports pad and stretch. "
            "Set data.resize: pad."
        )


def prepare_detection(data_config, seed: int = 0) -> DetectionData:
    """Load a detection source once and assign its splits.

    Example:
        >>> data = prepare_detection(cfg.data, seed=0)
        >>> images, targets = next(iter(data.dataset("train")))
        >>> targets["boxes"].shape  # (batch, max_boxes, 4)
    """
    check_detection_options(data_config)
    return load_detection(data_config, seed)


def load_detection(data_config, seed: int = 0) -> DetectionData:
    """:func:`prepare_detection` without checking the augment options (``data check`` uses it)."""
    if data_config.source.lower().startswith("tfds:"):
        read = load_tfds_detection(data_config.source, data_config)
        return DetectionData(data_config, seed, list(read.class_names), streams=read.streams)
    src = load_detection_source(data_config)
    labels = np.zeros(len(src), np.int64)
    indices = assign_splits(src.keys, labels, data_config.split, seed=seed)
    return DetectionData(data_config, seed, list(src.class_names), source=src, indices=indices)
