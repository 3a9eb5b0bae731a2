"""Losses by name, including focal and Dice losses for imbalanced and dense tasks.

Every kerasflow model outputs probabilities (a float32 softmax), so losses here
take probabilities, not logits. Labels may be sparse class ids (``(batch,)``,
``(batch, 1)``, ``(batch, H, W)`` or ``(batch, H, W, 1)``) or one-hot with the
same shape as the predictions; the custom losses tell them apart by shape.

Example:
    >>> from kerasflow.tasks.losses import get_loss
    >>> loss = get_loss("ce_dice", dice_weight=0.5)
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

from kerasflow.errors import ConfigError

_EPSILON = 1e-7


def one_hot_labels(y_true, y_pred, label_smoothing: float = 0.0):
    """``y_true`` as float one-hot with the shape of ``y_pred``, optionally smoothed.

    One-hot labels (same rank and last dimension as ``y_pred``) pass through;
    anything else is read as sparse class ids.
    """
    num_classes = y_pred.shape[-1]
    rank_true, rank_pred = len(y_true.shape), len(y_pred.shape)
    if rank_true == rank_pred and y_true.shape[-1] == num_classes and num_classes > 1:
        labels = ops.cast(y_true, y_pred.dtype)
    else:
        if rank_true == rank_pred:
            y_true = ops.squeeze(y_true, axis=-1)
        labels = ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype=y_pred.dtype)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / num_classes
    return labels


def _check_smoothing(label_smoothing: float) -> float:
    if not 0 <= label_smoothing < 1:
        raise ValueError(
            f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing}"
        )
    return float(label_smoothing)


def _cross_entropy(labels, y_pred):
    probs = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
    return -ops.sum(labels * ops.log(probs), axis=-1)


def _soft_dice(labels, y_pred, smooth: float):
    """Per-example soft Dice loss, averaged over classes (macro)."""
    spatial = tuple(range(1, len(y_pred.shape) - 1))
    if spatial:
        intersection = ops.sum(labels * y_pred, axis=spatial)
        total = ops.sum(labels, axis=spatial) + ops.sum(y_pred, axis=spatial)
    else:
        intersection, total = labels * y_pred, labels + y_pred
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - ops.mean(dice, axis=-1)


class _SmoothedLoss(keras.losses.Loss):
    """A loss with one argument, ``label_smoothing`` (checked, and kept in its config)."""

    default_name = "loss"

    def __init__(
        self,
        label_smoothing: float = 0.0,
        reduction="sum_over_batch_size",
        name: str | None = None,
        dtype=None,
    ):
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing})
        return config


@keras.saving.register_keras_serializable(package="kerasflow")
class SparseCategoricalCrossentropy(_SmoothedLoss):
    """Cross-entropy on probabilities for sparse or one-hot labels, with label smoothing.

    Keras' own sparse cross-entropy has no label smoothing; this one one-hots the
    labels first.

    Args:
        label_smoothing: mass moved from the true class to all classes.
    """

    default_name = "sparse_categorical_crossentropy"

    def call(self, y_true, y_pred):
        return _cross_entropy(one_hot_labels(y_true, y_pred, self.label_smoothing), y_pred)


@keras.saving.register_keras_serializable(package="kerasflow")
class FocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al. 2017): cross-entropy down-weighting easy examples.

    ``-alpha_t * (1 - p_t) ** gamma * log(p_t)`` summed over classes, per
    example (per pixel for segmentation).

    Args:
        gamma: focusing parameter; 0 gives cross-entropy.
        alpha: ``None``, one weight for all classes, or a list of per-class weights.
        label_smoothing: mass moved from the true class to all classes.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | list[float] | None = None,
        label_smoothing: float = 0.0,
        reduction="sum_over_batch_size",
        name: str = "focal_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0. Received: gamma={gamma}")
        self.gamma = float(gamma)
        self.alpha = list(alpha) if isinstance(alpha, list | tuple) else alpha
        self.label_smoothing = _check_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        labels = one_hot_labels(y_true, y_pred, self.label_smoothing)
        probs = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
        loss = -labels * ops.power(1.0 - probs, self.gamma) * ops.log(probs)
        if self.alpha is not None:
            loss = loss * ops.convert_to_tensor(self.alpha, dtype=loss.dtype)
        return ops.sum(loss, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"gamma": self.gamma, "alpha": self.alpha, "label_smoothing": self.label_smoothing}
        )
        return config


@keras.saving.register_keras_serializable(package="kerasflow")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss: ``1 - mean over classes of 2|P.Y| / (|P| + |Y|)`` per example.

    Computed over each example's pixels, so it suits segmentation where the
    foreground is small.

    Args:
        smooth: added to numerator and denominator; keeps empty classes at 0 loss.
    """

    def __init__(
        self,
        smooth: float = 1.0,
        reduction="sum_over_batch_size",
        name: str = "dice_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0. Received: smooth={smooth}")
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        return _soft_dice(one_hot_labels(y_true, y_pred), y_pred, self.smooth)

    def get_config(self):
        config = super().get_config()
        config.update({"smooth": self.smooth})
        return config


@keras.saving.register_keras_serializable(package="kerasflow")
class CrossEntropyDiceLoss(keras.losses.Loss):
    """Cross-entropy (mean over pixels) plus ``dice_weight`` times the Dice loss.

    Args:
        dice_weight: weight of the Dice term.
        smooth: Dice smoothing.
        label_smoothing: label smoothing of the cross-entropy term.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        label_smoothing: float = 0.0,
        reduction="sum_over_batch_size",
        name: str = "ce_dice_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if dice_weight < 0 or smooth < 0:
            raise ValueError(
                "dice_weight and smooth must be >= 0. "
                f"Received: dice_weight={dice_weight}, smooth={smooth}"
            )
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        labels = one_hot_labels(y_true, y_pred)
        smoothed = one_hot_labels(y_true, y_pred, self.label_smoothing)
        ce = _cross_entropy(smoothed, y_pred)
        spatial = tuple(range(1, len(ce.shape)))
        if spatial:
            ce = ops.mean(ce, axis=spatial)
        return ce + self.dice_weight * _soft_dice(labels, y_pred, self.smooth)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dice_weight": self.dice_weight,
                "smooth": self.smooth,
                "label_smoothing": self.label_smoothing,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasflow")
class PerLabelBinaryCrossentropy(_SmoothedLoss):
    """Binary cross-entropy on probabilities, one value per label (not averaged over labels).

    Unweighted it equals Keras' ``BinaryCrossentropy`` (the mean over batch and
    labels); a ``(batch, K)`` sample weight weighs every label of every example,
    which multi-label class weights need.

    Args:
        label_smoothing: targets move towards 0.5 by this much.
    """

    default_name = "binary_crossentropy"

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, y_pred.dtype)
        if self.label_smoothing:
            labels = labels * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        probs = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
        return -(labels * ops.log(probs) + (1.0 - labels) * ops.log(1.0 - probs))


def _sparse_ce(label_smoothing: float = 0.0, **kwargs):
    # Always ours: it also takes the soft one-hot targets that MixUp/CutMix produce,
    # which Keras' sparse cross-entropy rejects.
    return SparseCategoricalCrossentropy(label_smoothing=label_smoothing, **kwargs)


LOSSES: dict[str, Callable[..., keras.losses.Loss]] = {
    "sparse_categorical_crossentropy": _sparse_ce,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "ce_dice": CrossEntropyDiceLoss,
}


def get_loss(name: str, **kwargs) -> keras.losses.Loss:
    """A loss instance by name; ``kwargs`` go to its constructor.

    Args:
        name: one of :data:`LOSSES` (``sparse_categorical_crossentropy``,
            ``categorical_crossentropy``, ``binary_crossentropy``, ``focal``,
            ``dice``, ``ce_dice``).
        **kwargs: e.g. ``label_smoothing=0.1``, ``gamma=2.0``, ``dice_weight=0.5``.

    Raises:
        ConfigError: unknown name or arguments the loss does not take.
    """
    if name not in LOSSES:
        raise ConfigError(
            f"Unknown loss {name!r}. Choose one of: {', '.join(sorted(LOSSES))}. "
            f"Received: name={name!r}"
        )
    try:
        return LOSSES[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Bad parameters for loss {name!r}: {exc} Received: {kwargs}") from exc
