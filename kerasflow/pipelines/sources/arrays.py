"""In-memory sources: NumPy arrays (:func:`from_arrays`), scikit-learn's digits, ``.npz`` files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines.sources.source_data import (
    SourceData,
    check_mask_values,
    check_multi_hot,
    check_target,
)

MULTI_HOT_HINT = (
    "Its labels are 1-D (one class id per image); for multi-label data give labels as a "
    "2-D (n, K) 0/1 array."
)


def from_arrays(
    images,
    labels=None,
    class_names: list[str] | None = None,
    masks=None,
    name: str = "arrays",
) -> SourceData:
    """A source from NumPy arrays already in memory.

    Args:
        images: uint8 ``(n, h, w)`` or ``(n, h, w, c)`` with c in 1, 3, 4
            (float arrays in 0..1 are scaled to 0..255).
        labels: integer class ids ``(n,)`` (``class`` targets), or a 0/1 array
            ``(n, K)`` with K > 1 (``multi_hot`` targets: column k says whether
            label k is present).
        class_names: names of the class ids (or label columns); default ``"0".."k-1"``.
        masks: integer class-id maps ``(n, h, w)`` (``mask`` targets).
        name: used in keys (``name/000012``) and messages.

    Example:
        >>> src = from_arrays(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1]))
        >>> prepared = kerasflow.pipelines.prepare(cfg.data, seed=0, source=src)
        >>> tags = from_arrays(np.zeros((2, 8, 8), np.uint8), [[1, 0, 1], [0, 0, 0]])
        >>> tags.target
        'multi_hot'
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(
            f"Images of {name!r} must be (n, h, w) or (n, h, w, c) with c in 1, 3, 4. "
            f"Received: shape={images.shape}"
        )
    if images.dtype != np.uint8:
        scale = 255.0 if images.size and float(np.nanmax(images)) <= 1.0 else 1.0
        images = np.clip(np.round(images.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    n = len(images)
    keys = [f"{name}/{i:06d}" for i in range(n)]
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim == 4 and masks.shape[-1] == 1:
            masks = masks[..., 0]
        if masks.shape != images.shape[:3]:
            raise DataError(
                f"Masks of {name!r} must match the images' (n, h, w) {images.shape[:3]}. "
                f"Received: shape={masks.shape}"
            )
        masks = masks.astype(np.int32)
        num = int(masks.max()) + 1 if masks.size else 1
        names = list(class_names) if class_names else [f"class_{i}" for i in range(num)]
        check_mask_values(masks, names, name)
        return SourceData(
            name=name, kind="arrays", keys=keys, labels=np.zeros(n, np.int64),
            class_names=names, target="mask", images=images, masks=masks,
        )  # fmt: skip
    if labels is None:
        raise DataError(f"Source {name!r} has images but no labels. Pass labels (or masks).")
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return _multi_hot_arrays(images, labels, class_names, name, keys)
    labels = labels.astype(np.int64).reshape(-1)
    if len(labels) != n:
        raise DataError(
            f"Source {name!r} has {n} images but {len(labels)} labels. Give one label per image."
        )
    num = int(labels.max()) + 1 if n else 0
    names = list(class_names) if class_names else [str(i) for i in range(num)]
    if n and (labels.min() < 0 or labels.max() >= len(names)):
        bad = int(labels[(labels < 0) | (labels >= len(names))][0])
        raise DataError(
            f"Label {bad} of {name!r} is outside class_names ({len(names)} classes: "
            f"{names}). Fix the labels or data.class_names."
        )
    return SourceData(
        name=name, kind="arrays", keys=keys, labels=labels, class_names=names, images=images
    )


def _multi_hot_arrays(images, labels, class_names, name: str, keys: list[str]) -> SourceData:
    n, k = labels.shape
    if n != len(images):
        raise DataError(
            f"Source {name!r} has {len(images)} images but {n} label rows. "
            "Give one row of K 0/1 values per image."
        )
    check_multi_hot(labels, repr(name), keys)
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    if len(names) != k:
        raise DataError(
            f"Source {name!r} has {k} label columns but {len(names)} class_names ({names}). "
            "Give one name per column."
        )
    return SourceData(
        name=name, kind="arrays", keys=keys, labels=labels.astype(np.uint8), class_names=names,
        target="multi_hot", images=images,
    )  # fmt: skip


def load_digits_source(target: str | None = None) -> SourceData:
    """scikit-learn's bundled 1,797 8x8 handwritten digits, as uint8 images 0..255."""
    check_target("class", target, "data.source 'digits'", "Use a multi-label source instead.")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16 in the original data; scale to an image's 0..255.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    data = from_arrays(images, labels, [str(c) for c in range(10)], name="digits")
    data.keys = [f"digits/{i:04d}" for i in range(len(labels))]
    return data


def load_npz_source(
    path: str, class_names: list[str] | None, target: str | None = None
) -> SourceData:
    """A ``.npz`` file with ``images`` (or ``x``) and ``labels`` (or ``y``) or ``masks``.

    ``labels`` of shape ``(n, K)`` (K > 1) are multi-label 0/1 rows (``multi_hot``).
    """
    if not os.path.isfile(path):
        raise DataError(f"data.source {path!r} does not exist. Point it at a .npz file.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read {path} as a NumPy .npz file: {exc}") from exc
    images = arrays.get("images", arrays.get("x"))
    if images is None:
        raise DataError(
            f"{path} has no 'images' (or 'x') array. Found: {sorted(arrays)}. "
            "Save images under one of those names."
        )
    labels = arrays.get("labels", arrays.get("y"))
    if class_names is None and "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"]]
    data = from_arrays(images, labels, class_names, masks=arrays.get("masks"), name=Path(path).stem)
    check_target(data.target, target, path, MULTI_HOT_HINT)
    return data
