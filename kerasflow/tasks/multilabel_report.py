"""Multi-label evaluation: thresholds, metrics, MLflow scalars, PNG figures and an HTML section.

A multi-label model scores every label independently (sigmoid outputs), so an
example may carry none, one or several labels. The report turns scores into
decisions with one threshold per label (label ``k`` is predicted when
``scores[:, k] >= thresholds[k]``), usually chosen on the validation split by
:func:`choose_thresholds` and then applied unchanged to the test split.

Every metric follows scikit-learn's definitions with ``zero_division=0``: a
ratio whose denominator is zero counts as 0. Average precision is the
step-wise area under the precision-recall curve (no interpolation), as
``sklearn.metrics.average_precision_score``, and is undefined (None) for a
label without positive examples.

The module needs only NumPy and matplotlib (drawn on an Agg canvas, without
pyplot, so it neither changes the process's matplotlib backend nor keeps
figures alive).

Example:
    >>> import numpy as np
    >>> y = np.array([[1, 0], [0, 1], [1, 1]])
    >>> s = np.array([[0.9, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> r = multilabel_report(y, s, ["cat", "dog"], thresholds=choose_thresholds(y, s))
    >>> r["micro_f1"], [round(t, 6) for t in r["thresholds"]]
    (1.0, [0.45, 0.3])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kerasflow.errors import DataError
from kerasflow.tasks import report_html
from kerasflow.tasks.base import safe_metric_name

DEFAULT_THRESHOLD = 0.5
TOP_COOCCURRENCES = 10
MAX_LEGEND = 12
MAX_BAR_LABELS = 40  # the per-label bar chart shows at most this many labels (most frequent first)
CURVE_SIZE = (6.0, 5.0)  # inches at 100 dpi: 600 x 500 px

# Report keys logged as scalars by :func:`scalar_metrics`, with their MLflow names.
SCALAR_KEYS = {
    "micro_f1": "micro_f1",
    "macro_f1": "macro_f1",
    "micro_precision": "micro_precision",
    "micro_recall": "micro_recall",
    "macro_precision": "macro_precision",
    "macro_recall": "macro_recall",
    "samples_f1": "samples_f1",
    "subset_accuracy": "subset_accuracy",
    "hamming_loss": "hamming_loss",
    "mean_average_precision": "map",
}


# ----------------------------------------------------------------- inputs
def _as_arrays(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true as bool, scores as float64)``, both ``(n, K)``, or a DataError."""
    labels = np.asarray(y_true)
    probs = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or probs.shape != labels.shape:
        raise DataError(
            "y_true and scores must both have shape (examples, labels). "
            f"Received: y_true.shape={labels.shape}, scores.shape={probs.shape}"
        )
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = np.unique(labels[~np.isin(labels, (0, 1))])[:5].tolist()
        raise DataError(f"y_true must hold only 0 and 1 (one column per label). Received: {bad}")
    if not np.isfinite(probs).all():
        raise DataError(
            "scores must be finite; the model produced NaN or infinite values. "
            f"Received: {int((~np.isfinite(probs)).sum())} non-finite scores"
        )
    return labels.astype(bool), probs


def _thresholds_for(thresholds, num_labels: int) -> np.ndarray:
    if thresholds is None:
        return np.full(num_labels, DEFAULT_THRESHOLD)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 0:
        return np.full(num_labels, float(t))
    if t.shape != (num_labels,):
        raise DataError(
            f"thresholds must be one number or one per label ({num_labels}). "
            f"Received: shape {t.shape}"
        )
    return t


def _names(class_names, num_labels: int) -> list[str]:
    names = [str(n) for n in class_names]
    if len(names) != num_labels:
        raise DataError(
            f"class_names must name each of the {num_labels} label columns. "
            f"Received: {len(names)} names"
        )
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"class_names must be unique. Received duplicates: {dupes}")
    return names


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


# ----------------------------------------------------------------- curves
def _curve_counts(y_true: np.ndarray, scores: np.ndarray):
    """``(fps, tps, thresholds)`` at each distinct score, highest score first.

    ``tps[i]`` / ``fps[i]`` count the positives / negatives scoring
    ``>= thresholds[i]``.
    """
    order = np.argsort(scores, kind="mergesort")[::-1]
    s, y = scores[order], y_true[order]
    # The last index of each run of equal scores: one point per distinct threshold.
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], dtype=int)
    tps = np.cumsum(y)[ends].astype(np.float64)
    fps = (ends + 1).astype(np.float64) - tps
    return fps, tps, s[ends]


def _precision_recall(y_true: np.ndarray, scores: np.ndarray):
    """``(precision, recall, average_precision)``, from (recall 0, precision 1) to full recall.

    Average precision is ``sum_i (R_i - R_{i-1}) P_i``; None without positives.
    """
    fps, tps, _ = _curve_counts(y_true, scores)
    if len(tps) == 0 or tps[-1] == 0:
        return np.array([1.0]), np.array([0.0]), None
    # Cuts below the one that first reaches full recall only add false positives: drop them.
    last = int(np.searchsorted(tps, tps[-1])) + 1
    fps, tps = fps[:last], tps[:last]
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[1.0, precision], np.r_[0.0, recall], ap


# ----------------------------------------------------------------- thresholds
def choose_thresholds(y_true, scores, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-label decision thresholds that maximise each label's F1 on the given split.

    Pass the validation split, then apply the thresholds to the test split
    (label ``k`` is predicted when ``score >= thresholds[k]``).

    The rule, for each label:

    1. Every distinct score ``s`` is a candidate cut "predict positive when
       ``score >= s``"; its F1 is ``2 TP / (2 TP + FP + FN)``.
    2. The best cut is the one with the highest F1; among cuts with equal F1
       (compared exactly, as ratios of counts) the highest ``s`` wins, i.e.
       the fewest predicted positives.
    3. The threshold returned is the midpoint between that ``s`` and the next
       lower distinct score, so it reproduces the chosen decisions on this
       split without sitting exactly on one of its scores; when ``s`` is the
       lowest score (or no float lies strictly between the two), ``s`` itself.
    4. A label without positive examples keeps ``default`` (no cut has F1 > 0).

    Args:
        y_true: 0/1 labels ``(n, K)``.
        scores: sigmoid probabilities (or any scores, higher = more likely) ``(n, K)``.
        default: threshold of a label that has no positive example.

    Returns:
        ``(K,)`` float64 thresholds.

    Example:
        >>> choose_thresholds([[1], [1], [0], [0]], [[0.9], [0.8], [0.3], [0.2]]).tolist()
        [0.55]
    """
    labels, probs = _as_arrays(y_true, scores)
    thresholds = np.full(labels.shape[1], float(default))
    for k in range(labels.shape[1]):
        fps, tps, cuts = _curve_counts(labels[:, k], probs[:, k])
        positives = tps[-1] if len(tps) else 0.0
        if positives == 0:
            continue
        f1 = 2 * tps / (tps + fps + positives)
        best = int(np.argmax(f1))  # the first maximum: cuts run from the highest score down
        chosen = cuts[best]
        if best + 1 < len(cuts):
            lower = cuts[best + 1]
            mid = chosen / 2 + lower / 2
            if lower < mid <= chosen:
                chosen = mid
        thresholds[k] = chosen
    return thresholds


# ----------------------------------------------------------------- report
def multilabel_report(y_true, scores, class_names: Sequence[str], thresholds=None) -> dict:
    """Metrics of a multi-label classifier from 0/1 labels and per-label scores.

    Args:
        y_true: 0/1 labels ``(n, K)``.
        scores: sigmoid probabilities ``(n, K)``.
        class_names: the ``K`` label names, in column order (unique).
        thresholds: one threshold per label (e.g. from :func:`choose_thresholds`
            on the validation split), one number for all labels, or None for
            0.5. Label ``k`` is predicted when ``scores[:, k] >= thresholds[k]``.

    Returns:
        A JSON-ready dict: ``num_examples``, ``num_labels``, ``class_names``,
        ``thresholds``; ``micro_*``, ``macro_*``, ``weighted_*`` and
        ``samples_*`` precision, recall and F1; ``subset_accuracy`` (all
        labels of an example right), ``hamming_loss`` (fraction of wrong
        label decisions); ``mean_average_precision`` (mean AP over labels that
        have positives, None if none has); ``label_cardinality`` and
        ``predicted_label_cardinality`` (mean labels per example);
        ``examples_without_labels`` / ``examples_without_predictions``;
        ``top_cooccurrences`` (the most frequent pairs of true labels, as
        ``{"labels": [a, b], "count": c}``); and ``per_label``: for each name
        ``precision``, ``recall``, ``f1``, ``support``, ``predicted``,
        ``true_positives``, ``average_precision`` (None without positives)
        and ``threshold``.

    Example:
        >>> r = multilabel_report([[1, 0], [0, 1]], [[0.8, 0.1], [0.6, 0.9]], ["a", "b"])
        >>> r["micro_precision"], r["hamming_loss"], r["subset_accuracy"]
        (0.6666666666666666, 0.25, 0.5)
    """
    labels, probs = _as_arrays(y_true, scores)
    n, num_labels = labels.shape
    names = _names(class_names, num_labels)
    cuts = _thresholds_for(thresholds, num_labels)
    pred = probs >= cuts[None, :]

    hits = labels & pred
    tp = hits.sum(axis=0).astype(np.float64)
    predicted = pred.sum(axis=0).astype(np.float64)
    support = labels.sum(axis=0).astype(np.float64)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, predicted + support)

    report: dict = {
        "num_examples": int(n),
        "num_labels": int(num_labels),
        "class_names": names,
        "thresholds": [float(t) for t in cuts],
    }
    micro_tp, micro_pred, micro_true = tp.sum(), predicted.sum(), support.sum()
    report["micro_precision"] = float(_ratio(micro_tp, micro_pred))
    report["micro_recall"] = float(_ratio(micro_tp, micro_true))
    report["micro_f1"] = float(_ratio(2 * micro_tp, micro_pred + micro_true))
    weights = _ratio(support, micro_true)
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        report[f"macro_{name}"] = float(values.mean()) if num_labels else 0.0
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        report[f"weighted_{name}"] = float((values * weights).sum())
    row_tp = hits.sum(axis=1).astype(np.float64)
    row_pred = pred.sum(axis=1).astype(np.float64)
    row_true = labels.sum(axis=1).astype(np.float64)
    for name, values in (
        ("precision", _ratio(row_tp, row_pred)),
        ("recall", _ratio(row_tp, row_true)),
        ("f1", _ratio(2 * row_tp, row_pred + row_true)),
    ):
        report[f"samples_{name}"] = float(values.mean()) if n else 0.0
    report["subset_accuracy"] = float((pred == labels).all(axis=1).mean()) if n else 0.0
    report["hamming_loss"] = float((pred != labels).mean()) if labels.size else 0.0

    aps = [_precision_recall(labels[:, k], probs[:, k])[2] for k in range(num_labels)]
    defined = [ap for ap in aps if ap is not None]
    report["mean_average_precision"] = float(np.mean(defined)) if defined else None
    report["label_cardinality"] = float(row_true.mean()) if n else 0.0
    report["predicted_label_cardinality"] = float(row_pred.mean()) if n else 0.0
    report["examples_without_labels"] = int((row_true == 0).sum())
    report["examples_without_predictions"] = int((row_pred == 0).sum())
    report["top_cooccurrences"] = _top_cooccurrences(labels, names)
    report["per_label"] = {
        name: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "predicted": int(predicted[k]),
            "true_positives": int(tp[k]),
            "average_precision": aps[k],
            "threshold": float(cuts[k]),
        }
        for k, name in enumerate(names)
    }
    return report


def _top_cooccurrences(labels: np.ndarray, names: list[str]) -> list[dict]:
    """The most frequent pairs of labels true on the same example, most frequent first."""
    x = labels.astype(np.int64)
    counts = x.T @ x
    i, j = np.triu_indices(len(names), k=1)
    pair_counts = counts[i, j]
    # Stable sort on the negated count: equal counts keep column order, so the list is deterministic.
    order = np.argsort(-pair_counts, kind="stable")[:TOP_COOCCURRENCES]
    return [
        {"labels": [names[i[p]], names[j[p]]], "count": int(pair_counts[p])}
        for p in order
        if pair_counts[p] > 0
    ]


# ----------------------------------------------------------------- MLflow scalars
def scalar_metrics(report: dict, prefix: str = "test_") -> dict[str, float]:
    """Flat MLflow metrics of a :func:`multilabel_report`.

    Keys are ``{prefix}micro_f1``, ``macro_f1``, ``micro_precision``,
    ``micro_recall``, ``macro_precision``, ``macro_recall``, ``samples_f1``,
    ``subset_accuracy``, ``hamming_loss``, ``map`` and, per label,
    ``{prefix}ap_<name>`` and ``{prefix}f1_<name>`` with the name made safe by
    :func:`safe_metric_name`. When two names become the same safe name, the
    later label gets its column index appended (``_<k>``). None values (an
    undefined AP or mAP) are left out.

    Example:
        >>> r = multilabel_report([[1, 0], [0, 1]], [[0.8, 0.1], [0.6, 0.9]], ["a b", "c/d"])
        >>> m = scalar_metrics(r)
        >>> m["test_f1_a_b"], m["test_ap_c_d"]
        (0.6666666666666666, 1.0)
    """
    out: dict[str, float] = {}
    for key, metric in SCALAR_KEYS.items():
        if report.get(key) is not None:
            out[f"{prefix}{metric}"] = float(report[key])
    seen: set[str] = set()
    for k, name in enumerate(report["class_names"]):
        safe = safe_metric_name(name)
        if safe in seen:
            safe = f"{safe}_{k}"
        seen.add(safe)
        row = report["per_label"][name]
        if row["average_precision"] is not None:
            out[f"{prefix}ap_{safe}"] = float(row["average_precision"])
        out[f"{prefix}f1_{safe}"] = float(row["f1"])
    return out


# ----------------------------------------------------------------- figures
def _figure(width: float, height: float):
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def write_figures(report: dict, y_true, scores, out_dir, split: str) -> list[Path]:
    """Write the report's PNG figures for one split into ``out_dir`` (created if missing).

    - ``pr_curves_<split>.png``: the precision-recall curve of each label with
      a positive example, its AP in the legend and a dot at the operating
      point of the report's threshold (600 x 500 px);
    - ``per_label_<split>.png``: F1 and AP of each label as bars, with its
      support in the label (the :data:`MAX_BAR_LABELS` most frequent labels).

    Args:
        report: the :func:`multilabel_report` of ``y_true`` and ``scores``.
        y_true: 0/1 labels ``(n, K)``.
        scores: sigmoid probabilities ``(n, K)``.
        out_dir: folder to write into.
        split: split name used in the file names, e.g. ``"test"``.

    Returns:
        The written paths.
    """
    labels, probs = _as_arrays(y_true, scores)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        _pr_curves_png(report, labels, probs, out / f"pr_curves_{split}.png"),
        _per_label_png(report, out / f"per_label_{split}.png"),
    ]


def _pr_curves_png(report: dict, labels: np.ndarray, probs: np.ndarray, path: Path) -> Path:
    fig = _figure(*CURVE_SIZE)
    ax = fig.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall per label (dot: chosen threshold)")
    ax.grid(alpha=0.3)
    drawn = 0
    for k, name in enumerate(report["class_names"]):
        precision, recall, ap = _precision_recall(labels[:, k], probs[:, k])
        if ap is None:
            continue
        label = f"{name} (AP {ap:.3f})" if drawn < MAX_LEGEND else None
        (line,) = ax.step(recall, precision, where="pre", lw=1.2, label=label)
        row = report["per_label"][name]
        if row["predicted"]:
            ax.plot(row["recall"], row["precision"], "o", ms=5, color=line.get_color())
        drawn += 1
    if drawn:
        ax.legend(loc="lower left", fontsize=7)
    fig.savefig(path)
    return path


def _per_label_png(report: dict, path: Path) -> Path:
    names = report["class_names"]
    rows = report["per_label"]
    shown = sorted(names, key=lambda n: -rows[n]["support"])[:MAX_BAR_LABELS]
    count = max(len(shown), 1)
    fig = _figure(7.0, max(3.0, 0.32 * count + 1.4))
    ax = fig.subplots()
    y = np.arange(len(shown))
    f1 = [rows[n]["f1"] for n in shown]
    ap = [rows[n]["average_precision"] or 0.0 for n in shown]
    ax.barh(y - 0.2, f1, height=0.4, label="F1 (at threshold)")
    ax.barh(y + 0.2, ap, height=0.4, label="average precision")
    ax.set_yticks(y, [f"{n} (n={rows[n]['support']})" for n in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score")
    title = "F1 and AP per label"
    if len(shown) < len(names):
        title += f" ({len(shown)} most frequent of {len(names)})"
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


# ----------------------------------------------------------------- HTML
def html_section(report: dict) -> str:
    """An HTML fragment with the headline metrics and the per-label table.

    Numbers show with four decimals; an undefined value (AP of a label
    without positives) shows as a dash. Names are HTML-escaped.
    """
    headline = report_html.table(
        ["metric", "value"],
        [
            ["micro F1", report["micro_f1"]],
            ["macro F1", report["macro_f1"]],
            ["samples F1", report["samples_f1"]],
            ["micro precision", report["micro_precision"]],
            ["micro recall", report["micro_recall"]],
            ["subset accuracy (exact match)", report["subset_accuracy"]],
            ["Hamming loss", report["hamming_loss"]],
            ["mAP (labels with positives)", report["mean_average_precision"]],
            ["labels per example (true)", report["label_cardinality"]],
            ["labels per example (predicted)", report["predicted_label_cardinality"]],
        ],
    )
    per_label = report_html.table(
        ["label", "support", "threshold", "precision", "recall", "F1", "AP"],
        [
            [
                name,
                row["support"],
                row["threshold"],
                row["precision"],
                row["recall"],
                row["f1"],
                row["average_precision"],
            ]
            for name, row in ((n, report["per_label"][n]) for n in report["class_names"])
        ],
    )
    return (
        '<section class="multilabel">'
        f"<h2>Multi-label metrics ({report['num_examples']} examples, "
        f"{report['num_labels']} labels)</h2>{headline}"
        f"<h2>Per label</h2>{per_label}</section>"
    )
