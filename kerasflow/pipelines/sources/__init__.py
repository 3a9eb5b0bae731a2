"""Data sources: each turns the ``data.source`` setting into one :class:`SourceData`.

Every source yields the same element contract once decoded: an image (uint8,
HWC) and a target of one kind (:data:`~kerasflow.pipelines.sources.source_data.TARGETS`):
an int64 class id (``class``), an ``(H, W)`` int32 map of class ids
(``mask``) or a float32 ``(K,)`` 0/1 vector of labels (``multi_hot``). Each
example also has a stable string key (its path relative to the source, or
``name/index``) that decides its split.

Sources come in three kinds:

* ``arrays``: decoded images in memory (digits, ``.npz``, :func:`from_arrays`):
  :mod:`~kerasflow.pipelines.sources.arrays`;
* ``files``: image files on disk (class folders, manifests, segmentation pairs),
  decoded inside ``tf.data``: :mod:`~kerasflow.pipelines.sources.files`;
* ``stream``: records read in a fixed order by a ``tf.data`` reader, filtered
  by index for each split: :mod:`~kerasflow.pipelines.sources.tfrecord`,
  :mod:`~kerasflow.pipelines.sources.tfds`.

Detection sources hold boxes instead (:mod:`~kerasflow.pipelines.sources.boxes`):
COCO (:mod:`~kerasflow.pipelines.sources.coco`), Pascal VOC
(:mod:`~kerasflow.pipelines.sources.voc`), TFDS and the synthetic shapes set;
:func:`load_detection_source` reads the file ones.

This module is the dispatch: :func:`describe_source` names a source's kind,
:func:`load_source` and :func:`load_detection_source` read it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kerasflow.errors import DataError
from kerasflow.pipelines import synthetic
from kerasflow.pipelines.sources.arrays import from_arrays, load_digits_source, load_npz_source
from kerasflow.pipelines.sources.boxes import (
    DetectionSource,
    DetectionStreams,
    screen_detection_images,
)
from kerasflow.pipelines.sources.coco import load_coco
from kerasflow.pipelines.sources.files import (
    load_folder_source,
    load_manifest_source,
    load_segmentation_source,
    read_manifest,
)
from kerasflow.pipelines.sources.source_data import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    TARGETS,
    SourceData,
    check_target,
    check_target_name,
    screen_files,
)
from kerasflow.pipelines.sources.tfds import (
    load_tfds_detection,
    load_tfds_source,
    open_tfds_detection,
    parse_tfds_source,
    tfds_parts,
)
from kerasflow.pipelines.sources.tfrecord import load_tfrecord_source
from kerasflow.pipelines.sources.voc import load_voc

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "SYNTHETIC_SOURCES",
    "TARGETS",
    "DetectionSource",
    "DetectionStreams",
    "SourceData",
    "describe_source",
    "from_arrays",
    "load_coco",
    "load_detection_source",
    "load_digits_source",
    "load_folder_source",
    "load_manifest_source",
    "load_npz_source",
    "load_segmentation_source",
    "load_source",
    "load_tfds_detection",
    "load_tfds_source",
    "load_tfrecord_source",
    "load_voc",
    "open_tfds_detection",
    "parse_tfds_source",
    "read_manifest",
    "screen_files",
    "synthetic_dir",
    "tfds_parts",
]

log = logging.getLogger(__name__)

# synthetic:<name> sources that load_source reads (shapes_detection is a detection source).
SYNTHETIC_SOURCES = ("shapes_segmentation", "shapes_multilabel")


def describe_source(source: str) -> str:
    """The kind of source a ``data.source`` string names (without reading it)."""
    low = source.lower()
    if source == "digits":
        return "digits"
    if low.startswith("tfds:"):
        return "tfds"
    if low.startswith("synthetic:"):
        return "synthetic"
    if low.endswith((".npz", ".npy")):
        return "npz"
    if low.endswith((".csv", ".jsonl")):
        return "manifest"
    if ".tfrecord" in low:
        return "tfrecord"
    p = Path(source)
    if p.is_dir():
        if (p / "images").is_dir() and (p / "masks").is_dir():
            return "segmentation"
        return "folder"
    return "unknown"


def synthetic_dir(name: str, data_config) -> Path:
    """Where ``synthetic:<name>`` is generated: ``data.root`` or ``~/.cache/kerasflow``."""
    base = Path(data_config.root) if data_config.root else Path("~/.cache/kerasflow").expanduser()
    return base / f"synthetic_{name}"


def _load_synthetic(source: str, data_config, target: str | None) -> SourceData:
    name = source.split(":", 1)[1]
    if name == "shapes_segmentation":
        folder = synthetic.ensure_shapes_segmentation(synthetic_dir(name, data_config))
        data = load_segmentation_source(str(folder), data_config, target)
    elif name == "shapes_multilabel":
        folder = synthetic.ensure_shapes_multilabel(
            synthetic_dir(name, data_config), size=int(max(data_config.image_size))
        )
        rooted = data_config.model_copy(update={"root": str(folder)})
        data = load_manifest_source(str(folder / "labels.csv"), rooted, target)
    else:
        raise DataError(
            f"Unknown synthetic source {source!r}. Choose one of: "
            + ", ".join(f"synthetic:{n}" for n in SYNTHETIC_SOURCES)
            + " (synthetic:shapes_detection is read with experiment.task: detection)."
        )
    data.name = source
    return data


def load_source(data_config, target: str | None = None) -> SourceData:
    """Read the source named by ``data.source`` (file scans happen here, once).

    Args:
        data_config: the ``data:`` section (:class:`kerasflow.config.DataConfig`).
        target: the target kind the caller needs: ``class`` (one class id per
            image), ``mask`` (segmentation) or ``multi_hot`` (a set of labels
            per image). ``None`` takes what the source holds: ``class``,
            ``mask`` for segmentation sources, ``multi_hot`` for multi-label ones.

    Raises:
        DataError: the source is missing or bad, or cannot give ``target``
            targets (the message says what to change).

    Example:
        >>> src = load_source(cfg.data, target="multi_hot")
        >>> src.labels.shape  # (n, K) 0/1
    """
    check_target_name(target)
    source = data_config.source
    kind = describe_source(source)
    if kind == "digits":
        data = load_digits_source(target)
    elif kind == "npz":
        data = load_npz_source(source, data_config.class_names, target)
    elif kind == "manifest":
        data = load_manifest_source(source, data_config, target)
    elif kind == "tfrecord":
        data = load_tfrecord_source(source, data_config, target)
    elif kind == "tfds":
        data = load_tfds_source(source, data_config, target)
    elif kind == "segmentation":
        data = load_segmentation_source(source, data_config, target)
    elif kind == "folder":
        data = load_folder_source(source, data_config, target)
    elif kind == "synthetic":
        data = _load_synthetic(source, data_config, target)
    else:
        raise DataError(
            f"data.source {source!r} is not a known source: not 'digits', not an existing "
            "folder, and not a .npz, .csv/.jsonl, .tfrecord, tfds:<name> or "
            "synthetic:<name>. Check the path."
        )
    check_target(data.target, target, f"data.source {source!r}")
    names = data_config.class_names
    if names is not None and kind in ("digits", "npz") and list(names) != data.class_names:
        raise DataError(
            f"data.class_names {names} does not match the classes found "
            f"in {source!r}: {data.class_names}. Remove class_names or fix it."
        )
    if len(data) == 0:
        raise DataError(
            f"data.source {source!r} has no usable examples"
            + (f" ({len(data.skipped)} skipped as bad images)" if data.skipped else "")
            + ". Add data."
        )
    return data


def load_detection_source(data_config) -> DetectionSource:
    """The file source named by ``data.source`` (COCO JSON, VOC folder or synthetic).

    Every image file is scanned (``data.on_bad_image``) and must have the size
    its annotation gives.
    """
    source = data_config.source
    names = data_config.class_names
    on_bad = data_config.on_bad_image
    if source.startswith("synthetic:"):
        kind = source.split(":", 1)[1]
        if kind != "shapes_detection":
            raise DataError(
                f"Unknown synthetic detection source {source!r}. Use synthetic:shapes_detection."
            )
        size = int(max(data_config.image_size))
        folder = synthetic.ensure_shapes_detection(
            synthetic_dir(kind, data_config),
            num_images=data_config.detection.synthetic_images,
            size=size,
        )
        src = load_coco(folder / "annotations.json", folder, names, on_bad)
        src.name = source
    elif source.lower().endswith(".json"):
        src = load_coco(source, data_config.root, names, on_bad)
    elif Path(source).is_dir():
        src = load_voc(source, names, on_bad)
    else:
        raise DataError(
            f"data.source {source!r} is not a detection source: use a COCO .json file, a "
            "Pascal VOC folder (Annotations/, JPEGImages/), tfds:<name> or "
            "synthetic:shapes_detection."
        )
    screen_detection_images(src, data_config)
    if src.skipped:
        log.warning("skipped %d images with bad annotations in %s", len(src.skipped), source)
    if len(src) == 0:
        raise DataError(
            f"data.source {source!r} has no usable images ({len(src.skipped)} skipped). Add data."
        )
    max_boxes = data_config.detection.max_boxes
    most = max(len(c) for c in src.classes)
    if most > max_boxes:
        log.warning(
            "an image in %s has %d boxes but data.detection.max_boxes is %d; extra boxes are dropped",
            source, most, max_boxes,
        )  # fmt: skip
    return src
