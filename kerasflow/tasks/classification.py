"""Image classification: one class per image, a softmax head, the full classification report.

The report (:func:`classification_report`): accuracy, top-k accuracy,
per-class and macro/weighted precision, recall and F1, the confusion matrix
(counts and normalised), one-vs-rest ROC and precision-recall curves with
their AUC / average precision, calibration (reliability diagram, expected
calibration error) and a grid of the most confidently wrong images.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kerasflow.tasks import plots, predictions, report_html
from kerasflow.tasks.base import (
    Task,
    class_weights,
    display_images,
    image_signatures,
    take_examples,
)
from kerasflow.tasks.curves import CALIBRATION_BINS, calibration, precision_recall_curve, roc_curve
from kerasflow.tasks.metrics import METRICS

WRONG_GRID_SIZE = 16
_TOP_K = re.compile(r"^top_?(\d+)(_accuracy)?$")

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
    "macro_roc_auc",
    "macro_average_precision",
    "expected_calibration_error",
    "loss",
)
SUMMARY = (
    ("num_examples", "examples"),
    ("accuracy", "accuracy"),
    ("top3_accuracy", "top-3 accuracy"),
    ("top5_accuracy", "top-5 accuracy"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
    ("macro_f1", "macro F1"),
    ("weighted_precision", "weighted precision"),
    ("weighted_recall", "weighted recall"),
    ("weighted_f1", "weighted F1"),
    ("macro_roc_auc", "macro ROC AUC (one vs rest)"),
    ("macro_average_precision", "macro average precision"),
    ("expected_calibration_error", "expected calibration error"),
    ("loss", "loss"),
)


def classification_report(
    y_true, probabilities, class_names, top_k=(3, 5), calibration_bins: int = CALIBRATION_BINS
) -> dict:
    """Metrics of a classifier from integer labels and predicted probabilities.

    Returns accuracy, top-k accuracy (for k < number of classes), per-class and
    macro/weighted precision, recall and F1 with supports, the confusion
    matrix (rows: true class, columns: predicted class) and its row-normalised
    form, one-vs-rest ROC AUC and average precision per class with their
    macro means (over classes that have positives), and the calibration
    summary (see :func:`calibration`).

    Example:
        >>> r = classification_report([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
        >>> r["accuracy"], r["macro_roc_auc"]
        (1.0, 1.0)
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
    aucs, aps = [], []
    for i in range(n_classes):
        positives = y_true == i
        aucs.append(roc_curve(positives, probs[:, i])[2])
        aps.append(precision_recall_curve(positives, probs[:, i])[2])
    valid_auc = [a for a in aucs if a is not None]
    valid_ap = [a for a in aps if a is not None]
    report["macro_roc_auc"] = float(np.mean(valid_auc)) if valid_auc else None
    report["macro_average_precision"] = float(np.mean(valid_ap)) if valid_ap else None
    calib = calibration(y_true, probs, calibration_bins)
    report["expected_calibration_error"] = calib["expected_calibration_error"]
    report["per_class"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "roc_auc": aucs[i],
            "average_precision": aps[i],
        }
        for i, name in enumerate(class_names)
    }
    report["class_names"] = list(class_names)
    report["confusion_matrix"] = cm.tolist()
    report["confusion_matrix_normalized"] = (
        cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ).tolist()
    report["calibration"] = calib
    return report


def most_confident_mistakes(y_true, probabilities, count: int = WRONG_GRID_SIZE) -> np.ndarray:
    """Indices of wrong predictions, most confident first (at most ``count``)."""
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    probs = np.asarray(probabilities)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = probs[wrong, pred[wrong]]
    return wrong[np.argsort(-confidence, kind="mergesort")][:count]


def write_figures(report: dict, y_true, probs, data, split: str, out: Path) -> list[Path]:
    """The report's PNG figures; returns their paths in report order."""
    names = report["class_names"]
    written = [
        *plots.confusion_matrices_png(report["confusion_matrix"], names, out, split),
        plots.roc_curves_png(y_true, probs, names, out / f"roc_curves_{split}.png"),
        plots.pr_curves_png(y_true, probs, names, out / f"pr_curves_{split}.png"),
        plots.reliability_png(report["calibration"], out / f"reliability_{split}.png"),
    ]
    wrong = most_confident_mistakes(y_true, probs)
    if len(wrong):
        images = display_images(take_examples(data, split, wrong))
        pred = probs[wrong].argmax(axis=1)
        titles = [
            f"true {names[t]}\npred {names[p]} ({probs[i, p]:.2f})"
            for i, t, p in zip(wrong, np.asarray(y_true)[wrong], pred, strict=True)
        ]
        written.append(
            plots.image_grid_png(
                images,
                titles,
                out / f"confident_mistakes_{split}.png",
                title="most confident mistakes",
            )
        )
    return written


class ClassificationTask(Task):
    """One class per image (softmax over ``K`` classes)."""

    name = "classification"
    target = "class"
    model_kind = "classification"
    losses = ("sparse_categorical_crossentropy", "categorical_crossentropy", "focal")
    metrics = tuple(sorted(METRICS)) + ("topK_accuracy",)
    auto_metrics = ("accuracy",)
    monitor = "val_accuracy"
    champion = "test_accuracy"
    explainable = True
    adversarial = True

    def accepts_metric(self, name: str) -> bool:
        return name in METRICS or bool(_TOP_K.match(name))

    def fit_class_weight(self, setting, data) -> dict[int, float] | None:
        if setting is None:
            return None
        counts = np.bincount(data.labels("train").astype(int), minlength=data.num_classes)
        return class_weights(setting, counts, data.class_names)

    def logged_metrics(self, compile_config) -> list[str]:
        # A top-K metric logs as topK_accuracy whatever spelling the config used.
        names = []
        for name in self.metric_names(compile_config):
            match = _TOP_K.match(name)
            names.append(f"top{match.group(1)}_accuracy" if match and name not in METRICS else name)
        return ["loss", *names]

    def report(self, targets, scores, contract: dict) -> dict:
        return classification_report(targets, scores, contract["class_names"])

    def write_figures(self, report, targets, scores, data, split: str, out: Path) -> list[Path]:
        return write_figures(report, targets, scores, data, split, out)

    def attack_loss(self, logits, targets):
        import tensorflow as tf

        labels = tf.reshape(tf.cast(targets, tf.int32), [-1])
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    def scalar_metrics(self, report: dict, prefix: str = "test_") -> dict[str, float]:
        return {f"{prefix}{k}": report[k] for k in SCALAR_KEYS if report.get(k) is not None}

    def chance_level(self, report: dict) -> float | None:
        """The majority class's share of the split (always predicting it scores that accuracy)."""
        supports = [v["support"] for v in report.get("per_class", {}).values()]
        total = sum(supports)
        return max(supports) / total if total else None

    def html_section(self, report: dict) -> str:
        rows = [
            [n, v["precision"], v["recall"], v["f1"], v.get("roc_auc"), v.get("average_precision"),
             v["support"]]
            for n, v in report.get("per_class", {}).items()
        ]  # fmt: skip
        return "\n".join(
            [
                "<h2>Summary</h2>",
                report_html.summary_table(report, SUMMARY),
                "<h2>Per class</h2>",
                report_html.table(
                    ["class", "precision", "recall", "F1", "ROC AUC", "AP", "support"], rows
                ),
            ]
        )

    def serving_functions(self, model, data_config, contract: dict) -> dict:
        import tensorflow as tf

        names = tf.constant(contract["class_names"], dtype=tf.string)
        portable = self.portable_outputs(model, contract)

        def outputs(x):
            out = portable(x)
            return {**out, "class_name": tf.gather(names, out["class_id"])}

        return image_signatures(data_config, outputs)

    def portable_outputs(self, model, contract: dict):
        import tensorflow as tf

        def outputs(x):
            probabilities = tf.cast(model(x, training=False), tf.float32)
            class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
            return {"probabilities": probabilities, "class_id": class_id}

        return outputs

    def json_predictions(self, outputs, contract: dict) -> list[dict]:
        return predictions.classification(outputs, contract)
