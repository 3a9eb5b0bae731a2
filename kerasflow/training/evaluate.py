"""Evaluation reports: metrics computed from predictions, saved as JSON and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kerasflow.training import plots


def classification_report(y_true, probabilities, class_names, top_k=(3, 5)) -> dict:
    """Metrics of a classifier from integer labels and predicted probabilities.

    Returns accuracy, top-k accuracy (for k < number of classes), per-class and
    macro/weighted precision, recall and F1 with supports, and the confusion
    matrix (rows: true class, columns: predicted class).
    """
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    probs = np.asarray(probabilities, dtype=np.float64)
    n_classes = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y_true), n_classes):
        raise ValueError(
            f"probabilities must have shape ({len(y_true)}, {n_classes}). Received: {probs.shape}"
        )
    y_pred = probs.argmax(axis=1)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    weights = support / max(support.sum(), 1)
    report = {
        "num_examples": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
    }
    # Rank of the true class: top-k is right when fewer than k classes score higher.
    true_scores = probs[np.arange(len(y_true)), y_true]
    rank = (probs > true_scores[:, None]).sum(axis=1)
    for k in top_k:
        if k < n_classes:
            report[f"top{k}_accuracy"] = float((rank < k).mean())
    for avg, w in (("macro", np.full(n_classes, 1.0 / n_classes)), ("weighted", weights)):
        report[f"{avg}_precision"] = float((precision * w).sum())
        report[f"{avg}_recall"] = float((recall * w).sum())
        report[f"{avg}_f1"] = float((f1 * w).sum())
    report["per_class"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    report["class_names"] = list(class_names)
    report["confusion_matrix"] = cm.tolist()
    return report


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
    }


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


SCALAR_KEYS = (
    "accuracy",
    "top3_accuracy",
    "top5_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "pixel_accuracy",
    "mean_iou",
    "mean_dice",
)


def scalar_metrics(report: dict, prefix: str = "test_") -> dict[str, float]:
    """The report's headline numbers as ``{prefix + name: value}`` for MLflow."""
    out = {f"{prefix}{k}": report[k] for k in SCALAR_KEYS if k in report}
    if "mean_iou" in report:
        for name, values in report["per_class"].items():
            if values["iou"] is not None:
                out[f"{prefix}iou_{name}"] = values["iou"]
    if "loss" in report:
        out[f"{prefix}loss"] = report["loss"]
    return out


def predict(model, dataset) -> np.ndarray:
    """Model outputs for every example of a batched dataset of (image, label)."""
    return np.asarray(model.predict(dataset.map(lambda x, y: x), verbose=0))


def evaluate_split(
    model, prepared, split: str = "test", task: str = "classification", out_dir=None
) -> dict:
    """Evaluate on one split; write ``evaluation_<split>.json`` and confusion-matrix PNGs to ``out_dir``."""
    ds = prepared.dataset(split, training=False)
    probs = predict(model, ds)
    labels = prepared.labels(split)
    if task == "segmentation":
        report = segmentation_report(labels, probs, prepared.class_names)
    else:
        report = classification_report(labels, probs, prepared.class_names)
    report["split"] = split
    report["task"] = task
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"evaluation_{split}.json").write_text(json.dumps(report, indent=2))
        cm = report["confusion_matrix"]
        plots.confusion_matrix_png(cm, prepared.class_names, out / f"confusion_matrix_{split}.png")
        plots.confusion_matrix_png(
            cm,
            prepared.class_names,
            out / f"confusion_matrix_{split}_normalized.png",
            normalize=True,
        )
    return report


def evaluate_model(model: str, config=None, split: str = "test", out_dir=None, overrides=None):
    """Evaluate a saved or registered model on one split of its data.

    Args:
        model: ``models:/NAME@alias``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/model`` or a ``.keras`` path.
        config: the run config (path or :class:`RunConfig`); default: the config logged with the model's run.
        split: ``train``, ``validation`` or ``test``.
        out_dir: where the report files go (default ``./evaluation/<split>``).

    Returns:
        (report, out_dir)
    """
    from kerasflow import pipelines
    from kerasflow.config import RunConfig, build_config, load_config
    from kerasflow.errors import ConfigError
    from kerasflow.tracking import registry

    if isinstance(config, RunConfig):
        cfg = build_config(config.to_dict(), overrides)
    elif config is not None:
        cfg = load_config(config, overrides)
    else:
        text = registry.run_config_text(model)
        if text is None:
            raise ConfigError(f"{model} has no logged run config; pass --config CONFIG.")
        import yaml

        cfg = build_config(yaml.safe_load(text), overrides, origin=f"(config of {model})")
    keras_model = registry.load_model(model, cfg.tracking.uri)
    prepared = pipelines.prepare(cfg.data, cfg.experiment.seed)
    out = Path(out_dir) if out_dir else Path("evaluation") / split
    report = evaluate_split(keras_model, prepared, split, cfg.experiment.task, out_dir=out)
    return report, out
