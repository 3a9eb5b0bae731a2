"""``kerasflow data preview``: a PNG grid of augmented training samples.

For mask targets the mask is overlaid in colour (class 0 left clear).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from kerasflow.pipelines.builder import PreparedData, prepare
from kerasflow.pipelines.transforms import to_display

# Distinct colours for mask classes 1.. (class 0, the background, stays clear).
PALETTE = np.array(
    [
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
        [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
    ],
    dtype=np.float32,
)  # fmt: skip


def overlay_mask(image01: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours over a 0..1 RGB image; returns uint8 RGB."""
    rgb = image01 * 255.0
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    colours = PALETTE[mask % len(PALETTE)]
    on = (mask > 0)[..., None]
    out = np.where(on, (1 - alpha) * rgb + alpha * colours, rgb)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def sample_grid(prepared: PreparedData, count: int = 16, split: str = "train") -> np.ndarray:
    """Augmented samples of ``split`` tiled into one uint8 RGB array."""
    tiles = []
    for images, targets in prepared.dataset(split, training=True).as_numpy_iterator():
        images = to_display(images).numpy()
        for i in range(len(images)):
            if prepared.target == "mask":
                tiles.append(overlay_mask(images[i], targets[i]))
            else:
                tile = np.round(images[i] * 255).astype(np.uint8)
                tiles.append(np.repeat(tile, 3, axis=-1) if tile.shape[-1] == 1 else tile)
            if len(tiles) >= count:
                break
        if len(tiles) >= count:
            break
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    h, w = tiles[0].shape[:2]
    pad = 2
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = tile
    return grid


def write_preview(
    data_config,
    out: str | os.PathLike,
    seed: int = 0,
    count: int = 16,
    min_cell: int = 96,
    target: str | None = None,
) -> Path:
    """Write a grid of ``count`` augmented training samples to ``out`` (PNG).

    Small images are enlarged (nearest neighbour) so a cell is at least
    ``min_cell`` pixels wide. ``target`` is the target kind to read the source
    for (see :func:`~kerasflow.pipelines.builder.prepare`); masks are overlaid.
    """
    from PIL import Image

    prepared = prepare(data_config, seed, target=target)
    grid = sample_grid(prepared, count)
    h = data_config.image_size[0]
    scale = max(1, math.ceil(min_cell / max(h, 1)))
    image = Image.fromarray(grid)
    if scale > 1:
        image = image.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
