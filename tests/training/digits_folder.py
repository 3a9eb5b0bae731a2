"""A class-per-folder copy of scikit-learn's digits as PNG files, as a user would have on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_digits_folder(root, size: int = 32, classes=None, per_class: int | None = None) -> Path:
    """Write ``root/<digit>/<i>.png`` (``size`` x ``size`` grayscale) and return ``root``.

    Args:
        classes: the digits to write (default all ten).
        per_class: at most this many images per digit (default all, ~180).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = Path(root)
    wanted = range(10) if classes is None else classes
    for digit in wanted:
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        images = digits.images[digits.target == digit][:per_class]
        for i, image in enumerate(images):
            pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "L").resize((size, size), Image.BILINEAR).save(
                folder / f"{i:04d}.png"
            )
    return root
