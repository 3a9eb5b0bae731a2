"""Tiny detection data written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, h: int, w: int, blocks=()) -> Path:
    """A black RGB PNG with white blocks ``(top, left, bottom, right)`` in pixels."""
    image = np.zeros((h, w, 3), np.uint8)
    for top, left, bottom, right in blocks:
        image[top:bottom, left:right] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def write_coco(root: Path, images, categories=("cat", "dog"), name="ann.json") -> Path:
    """``images``: ``[(file_name, h, w, [(bbox_xywh, category_id), ...]), ...]``; PNGs are written."""
    doc = {"images": [], "annotations": [], "categories": []}
    doc["categories"] = [{"id": i + 1, "name": n} for i, n in enumerate(categories)]
    for i, (file_name, h, w, anns) in enumerate(images, start=1):
        if file_name:
            write_png(root / file_name, h, w)
        doc["images"].append({"id": i, "file_name": file_name, "height": h, "width": w})
        for bbox, cat in anns:
            doc["annotations"].append(
                {"id": len(doc["annotations"]) + 1, "image_id": i, "bbox": bbox, "category_id": cat}
            )
    path = root / name
    path.write_text(json.dumps(doc))
    return path


def data_config(source, root=None, **extra):
    """A validated detection ``DataConfig`` (only the data section is validated)."""
    from kerasflow.config import DataConfig

    data = {
        "source": str(source),
        "image_size": [64, 64],
        "channels": 3,
        "resize": "pad",
        "batch_size": 4,
        "split": {"train": 1.0, "validation": 0.0, "test": 0.0},
        **extra,
    }
    if root is not None:
        data["root"] = str(root)
    return DataConfig.model_validate(data)


def tiny_run(
    tmp_path: Path, name: str, *, data=None, train=None, tracking=None, **sections
) -> dict:
    """The dict of a tiny synthetic-shapes CenterNet run under ``tmp_path`` (for build_config).

    ``data``, ``train`` and ``tracking`` entries update those sections; other
    keyword arguments are whole sections (``compile``, ``tune``, ``export``...).
    """
    return {
        "experiment": {"name": name, "task": "detection", "work_dir": str(tmp_path / "runs")},
        "data": {
            "source": "synthetic:shapes_detection",
            "root": str(tmp_path / "data"),
            "image_size": [64, 64],
            "channels": 3,
            "resize": "pad",
            "batch_size": 8,
            **(data or {}),
        },
        "model": {
            "name": "centernet",
            "params": {
                "backbone_params": {"width_multiplier": 0.25},
                "neck_filters": 16,
                "head_filters": 16,
            },
        },
        "compile": {"loss": "centernet"},
        "train": {"verbose": 0, "early_stopping": {"enabled": False}, **(train or {})},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", **(tracking or {})},
        **sections,
    }
