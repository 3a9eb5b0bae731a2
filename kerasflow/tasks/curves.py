"""Binary score curves and calibration shared by the classification tasks.

ROC and precision-recall curves of one binary problem (one class against the
rest, or one label), and the reliability of top-1 confidences.
"""

from __future__ import annotations

import numpy as np

CALIBRATION_BINS = 15


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
