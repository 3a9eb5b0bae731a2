"""Metrics by name for classification and segmentation.

kerasflow models output probabilities; labels may be sparse class ids or
one-hot (told apart by shape, as in :mod:`kerasflow.tasks.losses`). The
metrics here reduce predictions to class ids (argmax) and work unchanged for
per-pixel outputs. Precision, recall, F1, mean IoU and Dice come from one
accumulated confusion matrix and are macro-averaged over the classes that
occur in the labels or the predictions (as scikit-learn does with
``zero_division=0``).

Example:
    >>> from kerasflow.tasks.metrics import get_metric
    >>> metrics = [get_metric(n, 10) for n in ("accuracy", "top3_accuracy", "f1")]
"""

from __future__ import annotations

import re
from collections.abc import Callable

import keras
from keras import ops

from kerasflow.errors import ConfigError


def class_ids_and_probs(y_true, y_pred):
    """Flatten to ``(ids[N], probs[N, C])``; a single sigmoid column becomes 2 classes."""
    num_classes = y_pred.shape[-1]
    rank_true, rank_pred = len(y_true.shape), len(y_pred.shape)
    if rank_true == rank_pred and y_true.shape[-1] == num_classes and num_classes > 1:
        ids = ops.argmax(y_true, axis=-1)
    else:
        ids = ops.squeeze(y_true, axis=-1) if rank_true == rank_pred else y_true
        ids = ops.cast(ops.round(ops.cast(ids, "float32")), "int32")
    probs = ops.reshape(ops.cast(y_pred, "float32"), (-1, num_classes))
    if num_classes == 1:
        probs = ops.concatenate([1.0 - probs, probs], axis=-1)
    return ops.reshape(ops.cast(ids, "int32"), (-1,)), probs


def _flat_weights(sample_weight, y_true, y_pred, n_ids):
    """Per-example (or per-pixel) weights broadcast to one per flattened label."""
    if sample_weight is None:
        return None
    w = ops.cast(sample_weight, "float32")
    target_rank = len(y_pred.shape) - 1  # one weight per class-id position
    while len(w.shape) < target_rank:
        w = ops.expand_dims(w, -1)
    w = ops.broadcast_to(w, tuple(ops.shape(y_pred)[:-1]))
    return ops.reshape(w, (n_ids,))


class _MeanOfMatches(keras.metrics.Metric):
    """Weighted mean of a 0/1 match per label; subclasses define ``_matches``."""

    def __init__(self, name: str, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        ids, probs = class_ids_and_probs(y_true, y_pred)
        matches = ops.cast(self._matches(ids, probs), "float32")
        weights = _flat_weights(sample_weight, y_true, y_pred, ops.shape(ids)[0])
        if weights is None:
            weights = ops.ones_like(matches)
        self.total.assign_add(ops.sum(matches * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="kerasflow")
class Accuracy(_MeanOfMatches):
    """Fraction of labels (examples or pixels) whose argmax prediction is right."""

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _matches(self, ids, probs):
        return ops.equal(ops.cast(ops.argmax(probs, axis=-1), "int32"), ids)


@keras.saving.register_keras_serializable(package="kerasflow")
class TopKAccuracy(_MeanOfMatches):
    """Fraction of labels whose class is among the ``k`` most probable.

    Args:
        k: how many top classes count as a hit.
    """

    def __init__(self, k: int = 5, name: str | None = None, dtype=None):
        if k < 1:
            raise ValueError(f"k must be >= 1. Received: k={k}")
        super().__init__(name=name or f"top{k}_accuracy", dtype=dtype)
        self.k = int(k)

    def _matches(self, ids, probs):
        # in_top_k breaks ties in favour of the label; count strictly larger scores instead.
        true_prob = ops.take_along_axis(probs, ops.expand_dims(ops.maximum(ids, 0), -1), axis=-1)
        better = ops.sum(ops.cast(probs > true_prob, "int32"), axis=-1)
        valid = ops.logical_and(ids >= 0, ids < probs.shape[-1])
        return ops.logical_and(better < self.k, valid)

    def get_config(self):
        config = super().get_config()
        config.update({"k": self.k})
        return config


SCORES = ("precision", "recall", "f1", "iou", "dice")


@keras.saving.register_keras_serializable(package="kerasflow")
class ConfusionMatrixScore(keras.metrics.Metric):
    """Macro-averaged precision, recall, F1, IoU or Dice from a confusion matrix.

    Labels outside ``[0, num_classes)`` (such as an ignore label 255 in
    segmentation masks) are skipped. For argmax predictions Dice equals F1.

    Args:
        num_classes: number of classes.
        score: ``precision``, ``recall``, ``f1``, ``iou`` or ``dice``.
    """

    def __init__(self, num_classes: int, score: str = "f1", name: str | None = None, dtype=None):
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}. Received: score={score!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes}")
        super().__init__(name=name or score, dtype=dtype)
        self.num_classes = int(num_classes)
        self.score = score
        self.matrix = self.add_variable(
            (self.num_classes, self.num_classes), initializer="zeros", name="confusion_matrix"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        ids, probs = class_ids_and_probs(y_true, y_pred)
        preds = ops.cast(ops.argmax(probs, axis=-1), "int32")
        # one_hot of an out-of-range id is all zeros, so ignore labels drop out.
        truth = ops.one_hot(ids, self.num_classes, dtype="float32")
        weights = _flat_weights(sample_weight, y_true, y_pred, ops.shape(ids)[0])
        if weights is not None:
            truth = truth * ops.expand_dims(weights, -1)
        predicted = ops.one_hot(preds, self.num_classes, dtype="float32")
        self.matrix.assign_add(ops.matmul(ops.transpose(truth), predicted))

    def result(self):
        tp = ops.diagonal(self.matrix)
        support = ops.sum(self.matrix, axis=1)  # true count per class
        predicted = ops.sum(self.matrix, axis=0)
        if self.score == "precision":
            per_class = ops.divide_no_nan(tp, predicted)
        elif self.score == "recall":
            per_class = ops.divide_no_nan(tp, support)
        elif self.score == "iou":
            per_class = ops.divide_no_nan(tp, support + predicted - tp)
        else:
            per_class = ops.divide_no_nan(2.0 * tp, support + predicted)
        present = ops.cast((support + predicted) > 0, "float32")
        return ops.divide_no_nan(ops.sum(per_class * present), ops.sum(present))

    def reset_state(self):
        self.matrix.assign(ops.zeros((self.num_classes, self.num_classes)))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "score": self.score})
        return config


@keras.saving.register_keras_serializable(package="kerasflow")
class AUC(keras.metrics.AUC):
    """ROC (or PR) AUC from probabilities with sparse or one-hot labels.

    Two classes: the AUC of the positive class. More: micro-averaged over the
    one-hot labels (every class column is one binary problem).

    Args:
        num_classes: number of classes.
        **kwargs: ``curve`` (``ROC`` or ``PR``), ``num_thresholds``, ...
    """

    def __init__(self, num_classes: int, name: str = "auc", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        ids, probs = class_ids_and_probs(y_true, y_pred)
        weights = _flat_weights(sample_weight, y_true, y_pred, ops.shape(ids)[0])
        if probs.shape[-1] == 2:
            return super().update_state(ops.cast(ids == 1, "float32"), probs[:, 1], weights)
        labels = ops.one_hot(ids, probs.shape[-1], dtype="float32")
        if weights is not None:
            weights = ops.broadcast_to(ops.expand_dims(weights, -1), ops.shape(labels))
        return super().update_state(labels, probs, weights)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config


def _top_k(num_classes: int, k: int = 5, **kwargs):
    return TopKAccuracy(k=k, **kwargs)


METRICS: dict[str, Callable[..., keras.metrics.Metric]] = {
    "accuracy": lambda num_classes, **kw: Accuracy(**kw),
    "top_k": _top_k,
    "precision": lambda num_classes, **kw: ConfusionMatrixScore(num_classes, "precision", **kw),
    "recall": lambda num_classes, **kw: ConfusionMatrixScore(num_classes, "recall", **kw),
    "f1": lambda num_classes, **kw: ConfusionMatrixScore(num_classes, "f1", **kw),
    "auc": lambda num_classes, **kw: AUC(num_classes, **kw),
    "mean_iou": lambda num_classes, **kw: ConfusionMatrixScore(
        num_classes, "iou", **{"name": "mean_iou", **kw}
    ),
    "dice": lambda num_classes, **kw: ConfusionMatrixScore(num_classes, "dice", **kw),
}

_TOP_K_NAME = re.compile(r"^top_?(\d+)(_accuracy)?$")


def get_metric(name: str, num_classes: int, **kwargs) -> keras.metrics.Metric:
    """A metric instance by name.

    Args:
        name: one of :data:`METRICS`, or ``topK_accuracy`` / ``topK`` for a
            top-K accuracy (``top3_accuracy``).
        num_classes: number of classes of the model's output.
        **kwargs: passed to the metric (``k`` for ``top_k``, ``curve`` for ``auc``).

    Raises:
        ConfigError: unknown name or bad parameters.
    """
    match = _TOP_K_NAME.match(name)
    if match and name not in METRICS:
        name, kwargs = "top_k", {"k": int(match.group(1)), **kwargs}
    if name not in METRICS:
        raise ConfigError(
            f"Unknown metric {name!r} in compile.metrics. Choose one of: "
            f"{', '.join(sorted(METRICS))} (or topK_accuracy, e.g. top3_accuracy). "
            f"Received: name={name!r}"
        )
    try:
        return METRICS[name](num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Bad parameters for metric {name!r}: {exc} Received: {kwargs}") from exc
