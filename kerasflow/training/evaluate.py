"""Evaluation reports: metrics computed from predictions, saved as JSON, PNG plots and HTML.

One report per evaluated split:

- classification: accuracy, top-k, per-class and macro/weighted precision,
  recall and F1, the confusion matrix (counts and normalised), one-vs-rest ROC
  and precision-recall curves with their AUC / average precision,
  calibration (reliability diagram, expected calibration error) and a grid of
  the most confidently wrong images;
- segmentation: per-class IoU and Dice, mean IoU, pixel accuracy, the pixel
  confusion matrix and a grid of image / true mask / predicted mask.

:func:`evaluate_split` writes ``evaluation_<split>.json``, the PNG figures and
``report_<split>.html`` (self-contained) into one folder; the training loop
logs that folder to the MLflow run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from kerasflow.training import plots

log = logging.getLogger(__name__)

CALIBRATION_BINS = 15
WRONG_GRID_SIZE = 16
SEGMENTATION_GRID_SIZE = 4


# ----------------------------------------------------------------- curves
def binary_curve_counts(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positive counts at each distinct score threshold, highest first.

    Args:
        y_true: 0/1 labels ``(n,)``.
        scores: higher means more likely positive ``(n,)``.

    Returns:
        ``(fps, tps, thresholds)``: counts of negatives and positives scoring
        ``>= thresholds[i]``.
    """
    y_true = np.asarray(y_true).astype(bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, y_true = scores[order], y_true[order]
    # The last index of each run of equal scores: one point per distinct threshold.
    distinct = np.where(np.diff(scores))[0]
    ends = np.r_[distinct, len(scores) - 1]
    tps = np.cumsum(y_true)[ends].astype(np.float64)
    fps = (ends + 1 - tps).astype(np.float64)
    return fps, tps, scores[ends]


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, float | None]:
    """ROC curve ``(fpr, tpr, auc)`` of one binary problem; auc None without both classes."""
    fps, tps, _ = binary_curve_counts(y_true, scores)
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    if fps[-1] == 0 or tps[-1] == 0:
        return fps, tps, None
    fpr, tpr = fps / fps[-1], tps / tps[-1]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def precision_recall_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Precision-recall curve ``(precision, recall, average_precision)`` of one binary problem.

    Average precision is the step-wise area ``sum_i (R_i - R_{i-1}) P_i`` (no
    interpolation), as scikit-learn's ``average_precision_score``; None when
    there is no positive example.
    """
    fps, tps, _ = binary_curve_counts(y_true, scores)
    if len(tps) == 0 or tps[-1] == 0:
        return np.array([1.0]), np.array([0.0]), None
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[1.0, precision], np.r_[0.0, recall], ap


def calibration(y_true, probabilities, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability of the top-1 confidence: per-bin accuracy and confidence, and the ECE.

    Confidence is the largest probability; bins are equal-width over
    ``[0, 1]`` and right-closed (``(a, b]``, the first also holds 0).
    ``ECE = sum_b |B_b| / n * |accuracy_b - confidence_b|``.
    """
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    probs = np.asarray(probabilities, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(ids, minlength=bins).astype(np.float64)
    acc_sum = np.bincount(ids, weights=correct, minlength=bins)
    conf_sum = np.bincount(ids, weights=confidence, minlength=bins)
    nonempty = counts > 0
    accuracy = np.divide(acc_sum, counts, out=np.zeros(bins), where=nonempty)
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(bins), where=nonempty)
    n = max(len(y_true), 1)
    ece = float(np.sum(counts / n * np.abs(accuracy - mean_conf)))
    mce = float(np.max(np.abs(accuracy - mean_conf)[nonempty])) if nonempty.any() else 0.0
    return {
        "expected_calibration_error": ece,
        "maximum_calibration_error": mce,
        "bin_edges": edges.tolist(),
        "bin_counts": counts.astype(int).tolist(),
        "bin_accuracy": [float(a) if c else None for a, c in zip(accuracy, counts, strict=True)],
        "bin_confidence": [float(a) if c else None for a, c in zip(mean_conf, counts, strict=True)],
    }


# ----------------------------------------------------------------- reports
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
    "pixel_accuracy",
    "mean_iou",
    "mean_dice",
)


def scalar_metrics(report: dict, prefix: str = "test_") -> dict[str, float]:
    """The report's headline numbers as ``{prefix + name: value}`` for MLflow."""
    if report.get("task") == "detection":
        from kerasflow.training.detection import scalar_metrics as detection_metrics

        out = detection_metrics(report, prefix)
        return {**out, f"{prefix}loss": report["loss"]} if "loss" in report else out
    out = {f"{prefix}{k}": report[k] for k in SCALAR_KEYS if report.get(k) is not None}
    if "mean_iou" in report:
        for name, values in report["per_class"].items():
            if values["iou"] is not None:
                out[f"{prefix}iou_{name}"] = values["iou"]
    if "loss" in report:
        out[f"{prefix}loss"] = report["loss"]
    return out


# ----------------------------------------------------------------- data helpers
def predict(model, dataset) -> np.ndarray:
    """Model outputs for every example of a batched dataset of (image, label)."""
    return np.asarray(model.predict(dataset.map(lambda x, y: x), verbose=0))


def take_examples(prepared, split: str, indices) -> np.ndarray:
    """The preprocessed uint8 images at ``indices`` (dataset order) of one split, in that order."""
    wanted = {int(i): k for k, i in enumerate(indices)}
    images: list = [None] * len(wanted)
    if not wanted:
        return np.zeros((0, *prepared.input_shape), np.uint8)
    last = max(wanted)
    for i, (image, _) in enumerate(prepared.dataset(split, training=False, batch=False)):
        if i in wanted:
            images[wanted[i]] = image.numpy()
        if i >= last:
            break
    return np.stack(images)


def display_images(images, data_config=None) -> np.ndarray:
    """Pipeline pixels (0..255) as 0..1 floats for figures; without a data config, min-max scaled."""
    if data_config is not None:
        from kerasflow.pipelines.transforms import to_display

        return np.asarray(to_display(images))
    images = np.asarray(images, dtype=np.float32)
    lo = images.min(axis=(1, 2, 3), keepdims=True)
    hi = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - lo) / np.maximum(hi - lo, 1e-12)


def most_confident_mistakes(y_true, probabilities, count: int = WRONG_GRID_SIZE) -> np.ndarray:
    """Indices of wrong predictions, most confident first (at most ``count``)."""
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    probs = np.asarray(probabilities)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = probs[wrong, pred[wrong]]
    return wrong[np.argsort(-confidence, kind="mergesort")][:count]


# ----------------------------------------------------------------- files
def write_figures(report: dict, y_true, probs, prepared, split: str, out: Path) -> list[Path]:
    """Every PNG figure of a report; returns their paths in report order."""
    names = report["class_names"]
    cm = report["confusion_matrix"]
    written = [
        plots.confusion_matrix_png(cm, names, out / f"confusion_matrix_{split}.png"),
        plots.confusion_matrix_png(
            cm, names, out / f"confusion_matrix_{split}_normalized.png", normalize=True
        ),
    ]
    data_config = getattr(prepared, "data_config", None)
    if report["task"] == "segmentation":
        n = min(SEGMENTATION_GRID_SIZE, len(y_true))
        if n:
            images = display_images(take_examples(prepared, split, range(n)), data_config)
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
    written.append(plots.roc_curves_png(y_true, probs, names, out / f"roc_curves_{split}.png"))
    written.append(plots.pr_curves_png(y_true, probs, names, out / f"pr_curves_{split}.png"))
    written.append(plots.reliability_png(report["calibration"], out / f"reliability_{split}.png"))
    wrong = most_confident_mistakes(y_true, probs)
    if len(wrong):
        images = display_images(take_examples(prepared, split, wrong), data_config)
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


def write_report_files(
    report: dict, out_dir, split: str, run_id: str | None = None, figures=None
) -> Path:
    """Write ``evaluation_<split>.json`` and ``report_<split>.html`` (figures found in ``out_dir``).

    Returns:
        The HTML report's path.
    """
    from kerasflow.training import report_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if run_id:
        report["run_id"] = run_id
    (out / f"evaluation_{split}.json").write_text(json.dumps(report, indent=2))
    if figures is None:
        figures = report_html.figures_in(out, split)
    html = report_html.render(report, figures, run_id=run_id or report.get("run_id"))
    path = out / f"report_{split}.html"
    path.write_text(html, encoding="utf-8")
    return path


def evaluate_split(
    model,
    prepared,
    split: str = "test",
    task: str = "classification",
    out_dir=None,
    *,
    run_id: str | None = None,
) -> dict:
    """Evaluate on one split and, with ``out_dir``, write the report there.

    Files: ``evaluation_<split>.json``, ``confusion_matrix_<split>[_normalized].png``,
    for classification ``roc_curves_``, ``pr_curves_``, ``reliability_`` and
    ``confident_mistakes_<split>.png``, for segmentation
    ``segmentation_examples_<split>.png``, and ``report_<split>.html`` with every
    figure embedded.

    Args:
        run_id: the MLflow run the report belongs to (named in the HTML page).
    """
    if task == "detection":
        from kerasflow.training.detection import evaluate_split_report

        return evaluate_split_report(model, prepared, split, out_dir, run_id=run_id)
    ds = prepared.dataset(split, training=False)
    probs = predict(model, ds)
    labels = prepared.labels(split)
    if task == "segmentation":
        report = segmentation_report(labels, probs, prepared.class_names)
    else:
        report = classification_report(labels, probs, prepared.class_names)
    report["split"] = split
    report["task"] = task
    if run_id:
        report["run_id"] = run_id
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_figures(report, labels, probs, prepared, split, out)
        write_report_files(report, out, split, run_id)
    return report


def add_run_explanations(
    model, prepared, report: dict, out_dir, train_config=None, run_id: str | None = None
) -> list[Path]:
    """Explanation overlays for a few images of the report's split, then the HTML again.

    Called by the training loop right after :func:`evaluate_split`: writes
    ``explanations_<split>_<method>.png`` (``train.explain_images`` images,
    ``train.explain_method``; 0 images turns it off; classification only) and
    rewrites ``report_<split>.html`` (every task) with those overlays and the run id.

    Returns:
        The overlay files written.
    """
    from kerasflow.training import explain

    split = report.get("split", "test")
    count = int(getattr(train_config, "explain_images", 4))
    method = getattr(train_config, "explain_method", "gradcam")
    written: list[Path] = []
    if report.get("task", "classification") == "classification" and count > 0:
        written = explain.write_split_explanations(
            model, prepared, out_dir, split=split, count=count, method=method
        )
    write_report_files(report, out_dir, split, run_id)
    return written


def resolve_config(model: str, config=None, overrides=None):
    """The run config to evaluate or explain ``model`` with (see ``registry.config_for_model``)."""
    from kerasflow.tracking import registry

    return registry.config_for_model(model, config, overrides)


def evaluate_model(
    model: str,
    config=None,
    split: str = "test",
    out_dir=None,
    overrides=None,
    log_to_run: bool = False,
):
    """Evaluate a saved or registered model on one split of its data.

    Args:
        model: ``models:/NAME@alias``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/model`` or a ``.keras`` path.
        config: the run config (path or :class:`RunConfig`); default: the config logged with the model's run.
        split: ``train``, ``validation`` or ``test``.
        out_dir: where the report files go (default ``./evaluation/<split>``).
        log_to_run: also log the report files to the model's MLflow run, under
            ``evaluation/<split>/``.

    Like a training run's report, it includes ``train.explain_images`` explanation
    overlays (classification).

    Returns:
        (report, out_dir); the HTML page is ``out_dir / f"report_{split}.html"``.
    """
    from kerasflow import pipelines
    from kerasflow.tracking import registry

    cfg = resolve_config(model, config, overrides)
    keras_model = registry.load_model(model, cfg.tracking.uri)
    run_id = registry.run_id_of(model, cfg.tracking.uri)
    if cfg.experiment.task == "detection":
        from kerasflow.training.detection import prepare_training_data

        prepared = prepare_training_data(cfg)
    else:
        prepared = pipelines.prepare(cfg.data, cfg.experiment.seed)
    out = Path(out_dir) if out_dir else Path("evaluation") / split
    report = evaluate_split(
        keras_model, prepared, split, cfg.experiment.task, out_dir=out, run_id=run_id
    )
    report["model"] = model
    add_run_explanations(keras_model, prepared, report, out, cfg.train, run_id)
    if log_to_run:
        from kerasflow.errors import TrackingError
        from kerasflow.tracking import RunTracker
        from kerasflow.tracking.store import resolve_tracking_uri

        if run_id is None:
            raise TrackingError(f"{model} is not an MLflow model; there is no run to log to.")
        tracker = RunTracker(resolve_tracking_uri(cfg.tracking.uri), run_id)
        for path in sorted(out.iterdir()):
            if path.is_file():
                tracker.log_artifact(path, f"evaluation/{split}")
    return report, out
