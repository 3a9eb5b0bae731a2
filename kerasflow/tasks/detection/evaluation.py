"""Detection evaluation: decoded detections of a split, the mAP report, box grids, mAP per epoch."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasflow.tasks.base import safe_metric_name
from kerasflow.tasks.detection.average_precision import mean_average_precision


def detector_fn(model, **decode_kwargs):
    """A compiled function ``images -> detections`` of a detector (heads or decoded model)."""
    from kerasflow.models.detector import inference_model

    decoded = isinstance(model.outputs[0], dict) or len(model.outputs) > 1
    detect = model if decoded else inference_model(model, **decode_kwargs)
    return tf.function(lambda x: detect(x, training=False), reduce_retracing=True)


def predict_split(
    model, prepared, split: str, limit: int | None = None, detect=None, **decode_kwargs
):
    """Run the decoded detector over a split.

    Returns ``(images, detections, ground_truths)``: images as 0..1 floats
    (kept only up to ``limit``; all when None), and per image
    ``(boxes, scores, classes)`` / ``(boxes, classes)`` in pixels of the model input.
    ``detect`` reuses a :func:`detector_fn` across calls.
    """
    from kerasflow.pipelines.transforms import to_display

    detect = detect or detector_fn(model, **decode_kwargs)
    h, w = prepared.input_shape[:2]
    scale = np.array([h, w, h, w], np.float32)
    images, dets, gts = [], [], []
    for x, target in prepared.dataset(split, training=False):
        out = detect(x)
        num = out["num_detections"].numpy()
        for i in range(len(num)):
            n = int(num[i])
            dets.append(
                (
                    out["boxes"].numpy()[i, :n] * scale,
                    out["scores"].numpy()[i, :n],
                    out["classes"].numpy()[i, :n],
                )
            )
            valid = target["classes"].numpy()[i] >= 0
            gts.append(
                (target["boxes"].numpy()[i][valid] * scale, target["classes"].numpy()[i][valid])
            )
            if limit is None or len(images) < limit:
                images.append(to_display(x[i]).numpy())
    return images, dets, gts


def evaluate_detection(
    model, prepared, split: str = "test", grid_path=None, grid_images: int = 16, detect=None
) -> dict:
    """mAP report of a split (and a grid of its images with boxes, when ``grid_path`` is set).

    ``detect`` reuses a :func:`detector_fn` across calls (one trace for many evaluations).
    """
    images, dets, gts = predict_split(model, prepared, split, limit=grid_images, detect=detect)
    report = mean_average_precision(
        dets, gts, prepared.num_classes, class_names=prepared.class_names
    )
    report["split"], report["task"] = split, "detection"
    report["num_images"] = report["num_examples"] = len(dets)
    if grid_path is not None and images:
        prediction_grid_png(images, dets, gts, prepared.class_names, grid_path)
    return report


def scalar_metrics(report: dict, prefix: str = "test_") -> dict[str, float]:
    """Flat MLflow metrics of an mAP report (``test_map50``, ``test_ap50_circle``, ...)."""
    out = {f"{prefix}{k}": float(report[k]) for k in ("map", "map50", "map75") if k in report}
    for name, values in report.get("per_class", {}).items():
        safe = safe_metric_name(name)
        for key in ("ap", "ap50"):
            out[f"{prefix}{key}_{safe}"] = float(values[key])
    return {k: v for k, v in out.items() if np.isfinite(v)}


PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]  # fmt: skip


def draw_boxes(image01: np.ndarray, detections, ground_truth, class_names, min_score: float = 0.3):
    """An RGB uint8 image with true boxes (white, thin) and predictions (class colour, label)."""
    from PIL import Image, ImageDraw

    pixels = (np.clip(image01, 0, 1) * 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    for y0, x0, y1, x1 in np.asarray(ground_truth[0]).reshape(-1, 4):
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255))
    boxes, scores, classes = detections
    for (y0, x0, y1, x1), s, c in zip(
        np.asarray(boxes).reshape(-1, 4), scores, classes, strict=True
    ):
        if s < min_score:
            continue
        color = PALETTE[int(c) % len(PALETTE)]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=2)
        draw.text((x0 + 2, y0 + 1), f"{class_names[int(c)]} {s:.2f}", fill=color)
    return np.asarray(canvas)


def prediction_grid_png(
    images, detections, ground_truths, class_names, path, columns: int = 4
) -> Path:
    """Write a grid of images with their predicted and true boxes."""
    from PIL import Image

    tiles = [
        draw_boxes(img, det, gt, class_names)
        for img, det, gt in zip(images, detections, ground_truths, strict=False)
    ]
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    grid = np.zeros((rows * (h + 2), min(columns, len(tiles)) * (w + 2), 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


class MapCallback(keras.callbacks.Callback):
    """Adds ``val_map50`` and ``val_map`` to each epoch's logs (before tracking and checkpoints).

    On the training split (no validation split) the keys are ``map50`` and ``map``.
    """

    def __init__(self, prepared, split: str = "validation"):
        super().__init__()
        self.prepared = prepared
        self.split = split
        self._detect = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self._detect is None:
            self._detect = detector_fn(self.model)
        _, dets, gts = predict_split(self.model, self.prepared, self.split, 0, self._detect)
        report = mean_average_precision(dets, gts, self.prepared.num_classes)
        # Without a validation split the training split stands in, under unprefixed names.
        prefix = "val_" if self.split == "validation" else ""
        logs[f"{prefix}map50"] = float(np.nan_to_num(report["map50"]))
        logs[f"{prefix}map"] = float(np.nan_to_num(report["map"]))
