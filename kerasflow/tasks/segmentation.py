"""Semantic segmentation: a class per pixel, per-class IoU and Dice.

The report (:func:`segmentation_report`): per-class IoU and Dice, mean IoU,
pixel accuracy, the pixel confusion matrix and a grid of image / true mask /
predicted mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasflow.tasks import plots, predictions, report_html
from kerasflow.tasks.base import (
    Task,
    class_weight_table,
    display_images,
    image_signatures,
    take_examples,
)
from kerasflow.tasks.metrics import METRICS

GRID_SIZE = 4
SCALAR_KEYS = ("accuracy", "pixel_accuracy", "mean_iou", "mean_dice", "loss")
SUMMARY = (
    ("num_examples", "examples"),
    ("pixel_accuracy", "pixel accuracy"),
    ("mean_iou", "mean IoU"),
    ("mean_dice", "mean Dice"),
    ("loss", "loss"),
)

# Losses with one value per pixel, which a per-pixel sample weight can weigh.
PIXEL_LOSSES = ("sparse_categorical_crossentropy", "focal", "categorical_crossentropy")


def pixel_class_weights(setting, masks, class_names) -> np.ndarray:
    """The weight of each class id for ``train.class_weight`` (float32, indexed by class id).

    ``balanced``: ``n / (K * n_c)`` with ``n_c`` the pixels of class ``c`` in
    ``masks`` and ``n`` all pixels; a map ``{class name: weight}`` as given
    (classes it leaves out weigh 1).
    """
    k = len(class_names)
    ids = np.asarray(masks).astype(np.int64).reshape(-1)
    counts = np.bincount(ids[(ids >= 0) & (ids < k)], minlength=k)
    return class_weight_table(setting, counts, class_names)


def with_pixel_weights(dataset, table):
    """``dataset`` of ``(images, masks)`` batches with a third element: each pixel's weight.

    Keras' ``fit`` multiplies the per-pixel loss by it. Masks may be class ids
    ``(b, h, w)`` / ``(b, h, w, 1)`` or one-hot ``(b, h, w, K)`` (their argmax).
    """
    import tensorflow as tf

    weights = tf.constant(np.asarray(table, np.float32))

    def add_weights(images, masks):
        ids = masks
        if masks.shape.rank == 4:
            ids = tf.squeeze(masks, -1) if masks.shape[-1] == 1 else tf.argmax(masks, -1)
        return images, masks, tf.gather(weights, tf.cast(ids, tf.int32))

    return dataset.map(add_weights, num_parallel_calls=tf.data.AUTOTUNE)


def segmentation_report(y_true, probabilities, class_names) -> dict:
    """Per-class IoU and Dice, mean IoU, pixel accuracy and the pixel confusion matrix.

    Args:
        y_true: integer masks ``(n, h, w)`` (or ``(n, h, w, 1)``).
        probabilities: per-pixel class scores ``(n, h, w, classes)``.
    """
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    probs = np.asarray(probabilities)
    n_classes = len(class_names)
    if probs.shape[-1] != n_classes or probs.size // n_classes != y_true.size:
        raise ValueError(
            f"probabilities must have shape masks + ({n_classes},). Received: {probs.shape}"
        )
    y_pred = probs.reshape(-1, n_classes).argmax(axis=1)
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )
    tp = np.diag(cm).astype(float)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    total = cm.sum(axis=0) + cm.sum(axis=1)
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    dice = np.divide(2 * tp, total, out=np.full_like(tp, np.nan), where=total > 0)
    return {
        "num_examples": int(probs.shape[0]),
        "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "mean_iou": float(np.nanmean(iou)),
        "mean_dice": float(np.nanmean(dice)),
        "per_class": {
            name: {
                "iou": _nan_to_none(iou[i]),
                "dice": _nan_to_none(dice[i]),
                "pixels": int(cm[i].sum()),
            }
            for i, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": (cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)).tolist(),
    }


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def write_figures(report: dict, y_true, probs, data, split: str, out: Path) -> list[Path]:
    """The confusion matrices and a grid of image / true mask / predicted mask."""
    names = report["class_names"]
    written = plots.confusion_matrices_png(report["confusion_matrix"], names, out, split)
    n = min(GRID_SIZE, len(y_true))
    if n:
        images = display_images(take_examples(data, split, range(n)))
        written.append(
            plots.segmentation_grid_png(
                images,
                np.asarray(y_true)[:n],
                np.asarray(probs)[:n].argmax(axis=-1),
                len(names),
                out / f"segmentation_examples_{split}.png",
            )
        )
    return written


class SegmentationTask(Task):
    """A class per pixel (softmax over ``K`` classes at every pixel)."""

    name = "segmentation"
    target = "mask"
    model_kind = "segmentation"
    losses = (
        "sparse_categorical_crossentropy",
        "ce_dice",
        "dice",
        "focal",
        "categorical_crossentropy",
    )
    metrics = tuple(sorted(METRICS))
    auto_metrics = ("accuracy", "mean_iou")
    monitor = "val_mean_iou"
    champion = "test_mean_iou"

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        loss = self.loss_name(cfg.compile)
        if cfg.train.class_weight is not None and loss not in PIXEL_LOSSES:
            from kerasflow.errors import ConfigError

            raise ConfigError(
                f"train.class_weight weighs each pixel's loss, but compile.loss {loss!r} is one "
                "value per image. Use compile.loss.name: one of "
                f"{', '.join(PIXEL_LOSSES)}, or remove train.class_weight."
            )

    def weighted_training(self, setting, data, dataset):
        """Per-pixel sample weights from the mask and :func:`pixel_class_weights`."""
        if setting is None:
            return dataset, None
        table = pixel_class_weights(setting, data.labels("train"), data.class_names)
        return with_pixel_weights(dataset, table), None

    def report(self, targets, scores, contract: dict) -> dict:
        return segmentation_report(targets, scores, contract["class_names"])

    def write_figures(self, report, targets, scores, data, split: str, out: Path) -> list[Path]:
        return write_figures(report, targets, scores, data, split, out)

    def scalar_metrics(self, report: dict, prefix: str = "test_") -> dict[str, float]:
        from kerasflow.tasks.base import safe_metric_name

        out = {f"{prefix}{k}": report[k] for k in SCALAR_KEYS if report.get(k) is not None}
        for name, values in report["per_class"].items():
            if values["iou"] is not None:
                out[f"{prefix}iou_{safe_metric_name(name)}"] = values["iou"]
        return out

    def chance_level(self, report: dict) -> float | None:
        """The mean IoU of labelling every pixel with the most frequent class.

        That class's IoU is its pixel share; every other class present scores 0
        and absent classes do not count (as in :func:`segmentation_report`).
        """
        pixels = [v["pixels"] for v in report.get("per_class", {}).values()]
        present = sum(1 for p in pixels if p > 0)
        total = sum(pixels)
        return max(pixels) / total / present if total else None

    def html_section(self, report: dict) -> str:
        rows = [[n, v["iou"], v["dice"], v["pixels"]] for n, v in report["per_class"].items()]
        return "\n".join(
            [
                "<h2>Summary</h2>",
                report_html.summary_table(report, SUMMARY),
                "<h2>Per class</h2>",
                report_html.table(["class", "IoU", "Dice", "pixels"], rows),
            ]
        )

    def serving_functions(self, model, data_config, contract: dict) -> dict:
        return image_signatures(data_config, self.portable_outputs(model, contract))

    def portable_outputs(self, model, contract: dict):
        import tensorflow as tf

        def outputs(x):
            probabilities = tf.cast(model(x, training=False), tf.float32)
            class_map = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            return {"probabilities": probabilities, "class_map": class_map}

        return outputs

    def json_predictions(self, outputs, contract: dict) -> list[dict]:
        return predictions.segmentation(outputs, contract)
