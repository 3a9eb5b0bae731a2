"""Data sources: each turns the ``data.source`` setting into one :class:`SourceData`.

Every source yields the same element contract: an image (uint8, HWC) and an
integer target, plus a stable string key per example that decides its split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kerasflow.errors import DataError


@dataclass
class SourceData:
    """Examples of one source, before splitting.

    Attributes:
        keys: a stable id per example (relative path or ``source/index``).
        labels: integer class ids, shape ``(n,)``.
        class_names: name of each class id.
        images: in-memory uint8 images ``(n, h, w, c)``, for array sources.
        paths: file paths, for file sources (``images`` is then None).
        skipped: files that were skipped, with the reason.
    """

    keys: list[str]
    labels: np.ndarray
    class_names: list[str]
    images: np.ndarray | None = None
    paths: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def load_digits_source() -> SourceData:
    """scikit-learn's bundled 1,797 8x8 handwritten digits, as uint8 images 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16 in the original data; scale to an image's 0..255.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    keys = [f"digits/{i:04d}" for i in range(len(labels))]
    return SourceData(keys=keys, labels=labels, class_names=[str(c) for c in range(10)], images=images)


def load_source(data_config) -> SourceData:
    """Dispatch on ``data.source``."""
    source = data_config.source
    if source == "digits":
        data = load_digits_source()
    else:
        raise DataError(
            f"Unsupported data.source {source!r}. Use 'digits' (more sources come with the "
            "pipelines package)."
        )
    if data_config.class_names is not None and list(data_config.class_names) != data.class_names:
        raise DataError(
            f"data.class_names {data_config.class_names} does not match the classes found in "
            f"{source!r}: {data.class_names}. Remove class_names or fix it."
        )
    return data
