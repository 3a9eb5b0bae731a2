"""Offline, deterministic shape sets: segmentation, detection and multi-label.

Each writer draws random shapes with NumPy's seeded generator and Pillow, so
the same arguments always give the same files, byte for byte; each
``ensure_*`` function writes a set once into a folder (with a ``DONE.json`` of
its parameters) and reuses it while the parameters match. ``load_source``
generates them under ``data.root`` (default ``~/.cache/kerasflow``) for
``synthetic:<name>`` sources.

* ``shapes_segmentation``: circles, squares and triangles (each its own class)
  on a noisy background: ``images/NNNN.png`` (RGB), ``masks/NNNN.png`` (8-bit
  class ids: 0 background, 1 circle, 2 square, 3 triangle) and ``classes.txt``.
* ``shapes_detection``: 1..4 shapes (circle, square, triangle, cross) on
  textured backgrounds, as a COCO set: ``images/NNNN.png`` and
  ``annotations.json``.
* ``shapes_multilabel``: 1..4 non-overlapping shapes (circle, square,
  triangle, cross) on a plain or lightly textured background; an image's
  labels are the shape classes it holds (two shapes may share a class):
  ``images/NNNN.png`` and a ``labels.csv`` manifest (``path,labels``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SEGMENTATION_CLASSES = ("background", "circle", "square", "triangle")
SEGMENTATION_DEFAULTS = {"num_images": 400, "size": 64, "seed": 0, "max_shapes": 3}
DETECTION_CLASSES = ("circle", "square", "triangle", "cross")
DETECTION_DEFAULTS = {"num_images": 600, "size": 128, "seed": 0, "max_shapes": 4}
MULTILABEL_CLASSES = ("circle", "square", "triangle", "cross")
MULTILABEL_DEFAULTS = {"num_images": 2000, "size": 32, "seed": 0, "max_shapes": 4}


def _ensure(out_dir, defaults: dict, params: dict, write) -> Path:
    """``write(out, **wanted)`` unless ``out/DONE.json`` records exactly the wanted parameters."""
    out = Path(out_dir)
    want = {**defaults, **params}
    done = out / "DONE.json"
    if done.is_file() and json.loads(done.read_text()) == want:
        return out
    return write(out, **want)


# --------------------------------------------------------------------------- segmentation
def draw_shapes_example(rng: np.random.Generator, size: int = 64, max_shapes: int = 3):
    """One segmentation ``(image uint8 (size, size, 3), mask uint8 (size, size))`` pair."""
    from PIL import Image, ImageDraw

    base = rng.integers(40, 110, size=3)
    noise = rng.normal(0, 18, size=(size, size, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(image)
    mask = Image.new("L", (size, size), 0)
    draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(1, len(SEGMENTATION_CLASSES)))
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
    num_images: int = SEGMENTATION_DEFAULTS["num_images"],
    size: int = SEGMENTATION_DEFAULTS["size"],
    seed: int = SEGMENTATION_DEFAULTS["seed"],
    max_shapes: int = SEGMENTATION_DEFAULTS["max_shapes"],
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
    (out / "classes.txt").write_text("\n".join(SEGMENTATION_CLASSES) + "\n")
    params = {"num_images": num_images, "size": size, "seed": seed, "max_shapes": max_shapes}
    (out / "DONE.json").write_text(json.dumps(params, sort_keys=True))
    return out


def ensure_shapes_segmentation(out_dir: str | os.PathLike, **params) -> Path:
    """Generate the set into ``out_dir`` unless a complete one with the same parameters is there."""
    return _ensure(out_dir, SEGMENTATION_DEFAULTS, params, write_shapes_segmentation)


# --------------------------------------------------------------------------- detection
def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 background: stripes, a gradient and noise around a dark colour."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.integers(30, 110, size=3).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(3, 12)
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    gradient = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) * 30
    amp = rng.uniform(5, 22)
    noise = rng.normal(0, 10, size=(size, size, 3))
    image = base + (stripes * amp + gradient)[..., None] * rng.uniform(0.5, 1, 3) + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def iou_xyxy(a, b) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def draw_shapes_detection_example(rng: np.random.Generator, size: int = 128, max_shapes: int = 4):
    """One textured image with 1..``max_shapes`` shapes and their boxes.

    Returns ``(image uint8 (size, size, 3), boxes [[x0, y0, x1, y1], ...] pixels,
    classes [...])``, classes indexing :data:`DETECTION_CLASSES`. A pixel ``i``
    covers ``[i, i + 1)``, so a shape drawn over pixels ``x0..x1`` has the box
    ``[x0, x1 + 1)``.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(texture(rng, size))
    draw = ImageDraw.Draw(canvas)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _try in range(20):
            r = int(rng.integers(max(3, size // 16), max(4, size // 5)))
            cx, cy = (int(v) for v in rng.integers(r, size - r - 1, size=2))
            box = [cx - r, cy - r, cx + r + 1, cy + r + 1]
            if all(iou_xyxy(box, b) < 0.05 for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(0, len(DETECTION_CLASSES)))
        color = tuple(int(c) for c in rng.integers(150, 256, size=3))
        x0, y0, x1, y1 = cx - r, cy - r, cx + r, cy + r
        if cls == 0:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        elif cls == 1:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        elif cls == 2:
            draw.polygon([(cx, y0), (x0, y1), (x1, y1)], fill=color)
        else:
            t = max(1, r // 3)
            draw.rectangle([cx - t, y0, cx + t, y1], fill=color)
            draw.rectangle([x0, cy - t, x1, cy + t], fill=color)
        boxes.append(box)
        classes.append(cls)
    return np.asarray(canvas), boxes, classes


def write_shapes_detection(
    out_dir: str | os.PathLike,
    num_images: int = DETECTION_DEFAULTS["num_images"],
    size: int = DETECTION_DEFAULTS["size"],
    seed: int = DETECTION_DEFAULTS["seed"],
    max_shapes: int = DETECTION_DEFAULTS["max_shapes"],
) -> Path:
    """Write the shapes detection set as COCO: ``images/NNNN.png`` and ``annotations.json``.

    The same arguments always give the same files.

    Example:
        >>> write_shapes_detection("/tmp/shapes_det", num_images=8, size=64)
        PosixPath('/tmp/shapes_det')
    """
    from PIL import Image

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image, boxes, classes = draw_shapes_detection_example(rng, size, max_shapes)
        name = f"images/{i:04d}.png"
        Image.fromarray(image).save(out / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for box, cls in zip(boxes, classes, strict=True):
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(DETECTION_CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (out / "annotations.json").write_text(json.dumps(coco))
    params = {"num_images": num_images, "size": size, "seed": seed, "max_shapes": max_shapes}
    (out / "DONE.json").write_text(json.dumps(params, sort_keys=True))
    return out


def ensure_shapes_detection(out_dir: str | os.PathLike, **params) -> Path:
    """Generate the set into ``out_dir`` unless a complete one with the same parameters is there."""
    return _ensure(out_dir, DETECTION_DEFAULTS, params, write_shapes_detection)


# --------------------------------------------------------------------------- multi-label
def _draw_shape(draw, name: str, cx: int, cy: int, r: int, color) -> None:
    """Draw one filled shape of class ``name`` centred at ``(cx, cy)`` inside a ``2r + 1`` box."""
    x0, y0, x1, y1 = cx - r, cy - r, cx + r, cy + r
    if name == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=color)
    elif name == "square":
        draw.rectangle([x0, y0, x1, y1], fill=color)
    elif name == "triangle":
        draw.polygon([(cx, y0), (x0, y1), (x1, y1)], fill=color)
    else:  # cross
        t = max(1, r // 3)
        draw.rectangle([cx - t, y0, cx + t, y1], fill=color)
        draw.rectangle([x0, cy - t, x1, cy + t], fill=color)


def draw_shapes_multilabel_example(
    rng: np.random.Generator, size: int = 32, max_shapes: int = 4
) -> tuple[np.ndarray, list[int]]:
    """One image with 1..``max_shapes`` non-overlapping shapes and the class of each.

    Shapes have a radius between 1/8 and 1/5 of the side (at least 3 pixels),
    bright colours (each channel 150..255) on a dark background (20..90, plain
    or with light noise), and keep at least one pixel of background between
    each other. A shape that finds no free place in 30 tries is left out, so
    the classes returned are exactly those drawn.

    Returns:
        ``(image uint8 (size, size, 3), classes)``, classes indexing
        :data:`MULTILABEL_CLASSES` (one per shape, repeats possible).
    """
    from PIL import Image, ImageDraw

    base = rng.integers(20, 91, size=3).astype(np.float64)
    noise = rng.normal(0, 6, size=(size, size, 3)) * rng.integers(0, 2)
    background = np.clip(np.round(base + noise), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(background)
    draw = ImageDraw.Draw(canvas)
    low, high = max(3, size // 8), max(4, size // 5)
    placed: list[tuple[int, int, int, int]] = []
    classes = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(0, len(MULTILABEL_CLASSES)))
        color = tuple(int(c) for c in rng.integers(150, 256, size=3))
        for _try in range(30):
            r = int(rng.integers(low, high + 1))
            cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
            box = (cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1)  # with a 1-pixel margin
            if all(
                box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in placed
            ):
                break
        else:
            continue
        _draw_shape(draw, MULTILABEL_CLASSES[cls], cx, cy, r, color)
        placed.append(box)
        classes.append(cls)
    return np.asarray(canvas), classes


def write_shapes_multilabel(
    out_dir: str | os.PathLike,
    num_images: int = MULTILABEL_DEFAULTS["num_images"],
    size: int = MULTILABEL_DEFAULTS["size"],
    seed: int = MULTILABEL_DEFAULTS["seed"],
    max_shapes: int = MULTILABEL_DEFAULTS["max_shapes"],
) -> Path:
    """Write the multi-label shapes set: ``images/NNNN.png`` and ``labels.csv`` (``path,labels``).

    An image's labels are the classes of the shapes it holds, in
    :data:`MULTILABEL_CLASSES` order, joined by ``|``. The same arguments
    always give the same files.

    Example:
        >>> write_shapes_multilabel("/tmp/tags", num_images=8, size=32)
        PosixPath('/tmp/tags')
    """
    from PIL import Image

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["path,labels"]
    for i in range(num_images):
        image, classes = draw_shapes_multilabel_example(rng, size, max_shapes)
        name = f"images/{i:04d}.png"
        Image.fromarray(image).save(out / name)
        labels = [MULTILABEL_CLASSES[c] for c in sorted(set(classes))]
        lines.append(f"{name},{'|'.join(labels)}")
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    params = {"num_images": num_images, "size": size, "seed": seed, "max_shapes": max_shapes}
    (out / "DONE.json").write_text(json.dumps(params, sort_keys=True))
    return out


def ensure_shapes_multilabel(out_dir: str | os.PathLike, **params) -> Path:
    """Generate the set into ``out_dir`` unless a complete one with the same parameters is there."""
    return _ensure(out_dir, MULTILABEL_DEFAULTS, params, write_shapes_multilabel)
