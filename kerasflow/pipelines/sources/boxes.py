"""Box annotations as read from a detection source, and the checks every box reader shares.

:class:`DetectionSource` holds the annotations of a file source (COCO, VOC,
the synthetic shapes set), :class:`DetectionStreams` the per-split streams of
a TFDS detection dataset. Boxes are ``[ymin, xmin, ymax, xmax]`` fractions of
the image (see :mod:`kerasflow.pipelines.box_ops`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines import scan as scan_lib
from kerasflow.pipelines.sources.source_data import screen_files

# Boxes may reach this many pixels past the image edge (rounding in annotation tools).
EDGE_TOLERANCE = 1.0


@dataclass
class DetectionSource:
    """Annotations read from a file source: one entry per usable image.

    ``boxes[i]`` is ``[n, 4]`` float32 ``[ymin, xmin, ymax, xmax]`` fractions,
    ``classes[i]`` ``[n]`` int32 ids into ``class_names``, ``sizes[i]`` the
    ``(width, height)`` the annotation gives the image.
    """

    name: str
    class_names: list[str]
    keys: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    classes: list[np.ndarray] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    formats: frozenset[str] | None = None  # from the file scan; None: unknown

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class DetectionStreams:
    """A detection source read as one stream per split (TFDS).

    ``streams[split]`` is ``(open_fn, size)``: ``open_fn()`` gives that split's
    ``tf.data.Dataset`` of ``(uint8 image, boxes [n, 4], classes [n])``.
    """

    name: str
    class_names: list[str]
    streams: dict[str, tuple[Callable, int]] = field(default_factory=dict)


class BadAnnotation(Exception):
    """One image's annotations are unusable (raised, or counted under ``on_bad_image: skip``)."""


def check_box(box_xyxy, width: float, height: float, what: str) -> np.ndarray:
    """A pixel ``[x0, y0, x1, y1]`` box as ``[ymin, xmin, ymax, xmax]`` fractions, checked.

    Raises:
        BadAnnotation: the box is not finite, is empty or inverted, or lies
            outside the image by more than :data:`EDGE_TOLERANCE` pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        raise BadAnnotation(f"{what} is not finite: {box_xyxy}")
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        side = "width" if x1 - x0 <= 0 else "height"
        raise BadAnnotation(f"{what} has a negative or zero {side}: {box_xyxy}")
    tol = EDGE_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise BadAnnotation(f"{what} {box_xyxy} lies outside the {width:g}x{height:g} image")
    x0, x1 = max(x0, 0.0), min(x1, width)
    y0, y1 = max(y0, 0.0), min(y1, height)
    return np.array([y0 / height, x0 / width, y1 / height, x1 / width], np.float32)


def class_index(names: list[str], given: list[str] | None) -> dict[str, int]:
    """Class name -> id: in ``given`` (``data.class_names``) order, else in ``names`` order."""
    order = list(given) if given else list(names)
    return {n: i for i, n in enumerate(order)}


def add_example(src: DetectionSource, key, path, boxes, classes, size) -> None:
    """Append one image's annotations to ``src``."""
    src.sizes.append((int(size[0]), int(size[1])))
    src.keys.append(key)
    src.paths.append(str(path))
    src.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
    src.classes.append(np.asarray(classes, np.int32).reshape(-1))


def reject_image(src: DetectionSource, where: str, key: str, why: str, on_bad: str) -> None:
    """Skip one image (``on_bad == "skip"``: counted in ``src.skipped``) or raise.

    Raises:
        DataError: ``on_bad`` is ``error``; names ``where`` and ``why``.
    """
    if on_bad == "skip":
        src.skipped.append((key, why))
        return
    raise DataError(
        f"{where}: {why}. Fix the annotation, or set data.on_bad_image: skip to skip "
        "such images (they are counted)."
    )


def screen_detection_images(src: DetectionSource, data_config) -> None:
    """Scan every image file like the other file sources do (``on_bad_image``), and
    check that each image has the size its annotation gives (boxes are fractions of it)."""
    keep, skipped, src.formats = screen_files([Path(p) for p in src.paths], data_config)
    src.skipped.extend(skipped)
    for i in np.flatnonzero(keep):
        actual, said = scan_lib.image_size(src.paths[i]), src.sizes[i]
        if tuple(actual) != said:
            why = (
                f"the image {src.paths[i]} is {actual[0]}x{actual[1]} but its annotation "
                f"says {said[0]}x{said[1]}, so its boxes would be scaled wrong"
            )
            reject_image(
                src, f"{src.name}: image {src.keys[i]!r}", src.keys[i], why,
                data_config.on_bad_image,
            )  # fmt: skip
            keep[i] = False
    for name in ("keys", "paths", "boxes", "classes", "sizes"):
        values = getattr(src, name)
        setattr(src, name, [v for v, k in zip(values, keep, strict=True) if k])
