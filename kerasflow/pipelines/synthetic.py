"""An offline, deterministic segmentation set: random shapes on a noisy background.

``write_shapes_segmentation`` draws circles, squares and triangles (each its
own class) on a noisy background and writes ``images/NNNN.png`` (RGB) and
``masks/NNNN.png`` (8-bit class ids: 0 background, 1 circle, 2 square,
3 triangle) plus ``classes.txt``. The same arguments always give the same
files, byte for byte. The packaged ``segmentation_shapes.yaml`` config points
``data.source`` at ``synthetic:shapes_segmentation``, which is generated once
under ``data.root`` on first use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SHAPE_CLASSES = ("background", "circle", "square", "triangle")
DEFAULTS = {"num_images": 400, "size": 64, "seed": 0, "max_shapes": 3}


def draw_shapes_example(rng: np.random.Generator, size: int = 64, max_shapes: int = 3):
    """One ``(image uint8 (size, size, 3), mask uint8 (size, size))`` pair."""
    from PIL import Image, ImageDraw

    base = rng.integers(40, 110, size=3)
    noise = rng.normal(0, 18, size=(size, size, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(image)
    mask = Image.new("L", (size, size), 0)
    draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(1, len(SHAPE_CLASSES)))
        r = int(rng.integers(size // 10, size // 4))
        cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
        color = tuple(int(c) for c in rng.integers(140, 256, size=3))
        if cls == 1:
            box = [cx - r, cy - r, cx + r, cy + r]
            draw.ellipse(box, fill=color)
            mdraw.ellipse(box, fill=cls)
        elif cls == 2:
            box = [cx - r, cy - r, cx + r, cy + r]
            draw.rectangle(box, fill=color)
            mdraw.rectangle(box, fill=cls)
        else:
            pts = [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
            draw.polygon(pts, fill=color)
            mdraw.polygon(pts, fill=cls)
    return np.asarray(canvas), np.asarray(mask)


def write_shapes_segmentation(
    out_dir: str | os.PathLike,
    num_images: int = DEFAULTS["num_images"],
    size: int = DEFAULTS["size"],
    seed: int = DEFAULTS["seed"],
    max_shapes: int = DEFAULTS["max_shapes"],
) -> Path:
    """Write the set into ``out_dir`` (``images/``, ``masks/``, ``classes.txt``).

    Example:
        >>> write_shapes_segmentation("/tmp/shapes", num_images=20, size=32)
        PosixPath('/tmp/shapes')
    """
    from PIL import Image

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        image, mask = draw_shapes_example(rng, size, max_shapes)
        Image.fromarray(image).save(out / "images" / f"{i:04d}.png")
        Image.fromarray(mask, mode="L").save(out / "masks" / f"{i:04d}.png")
    (out / "classes.txt").write_text("\n".join(SHAPE_CLASSES) + "\n")
    params = {"num_images": num_images, "size": size, "seed": seed, "max_shapes": max_shapes}
    (out / "DONE.json").write_text(json.dumps(params, sort_keys=True))
    return out


def ensure_shapes_segmentation(out_dir: str | os.PathLike, **params) -> Path:
    """Generate the set into ``out_dir`` unless a complete one with the same parameters is there."""
    out = Path(out_dir)
    want = {**DEFAULTS, **params}
    done = out / "DONE.json"
    if done.is_file() and json.loads(done.read_text()) == want:
        return out
    return write_shapes_segmentation(out, **want)
