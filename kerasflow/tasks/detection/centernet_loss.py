"""The CenterNet loss and its terms as metrics.

The penalty-reduced focal loss of CenterNet on the heatmaps (focal loss with
``alpha=2`` on classes, negatives near a centre down-weighted by
``(1 - y)^beta``), plus an L1 loss on offsets and sizes, or GIoU on the decoded
centre box (``box_loss: giou``); every term is divided by the number of
objects in the batch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

DETECTION_LOSSES = ("centernet",)


def heatmap_focal_loss(target, logits, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss, summed (divide by the number of objects).

    Positives are cells whose target is 1; a negative near a centre (target
    ``y < 1``) is down-weighted by ``(1 - y)^beta``. Probabilities are clamped
    to ``[1e-4, 1 - 1e-4]``.
    """
    target = tf.cast(target, tf.float32)
    # Clamped as in CenterNet: each cell's loss stays below -log(1e-4), so one
    # confident mistake early in training cannot overflow the sum.
    p = tf.clip_by_value(tf.sigmoid(tf.cast(logits, tf.float32)), 1e-4, 1 - 1e-4)
    pos = tf.cast(target >= 1.0 - 1e-6, tf.float32)
    pos_loss = -tf.math.log(p) * (1 - p) ** alpha * pos
    neg_loss = -tf.math.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - pos)
    return tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)


def giou(a, b):
    """Generalized IoU of paired ``[..., 4]`` ``[ymin, xmin, ymax, xmax]`` boxes."""
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)

    def area(x):
        return tf.maximum(x[..., 2] - x[..., 0], 0.0) * tf.maximum(x[..., 3] - x[..., 1], 0.0)

    inter_h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    union = area(a) + area(b) - inter
    iou = tf.math.divide_no_nan(inter, union)
    hull_h = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    hull_w = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    hull = hull_h * hull_w
    return iou - tf.math.divide_no_nan(hull - union, hull)


def _centre_box(reg):
    """``[offset_y, offset_x, h, w]`` -> a box around the offset (relative to the cell)."""
    h = tf.maximum(reg[..., 2], 0.0) / 2
    w = tf.maximum(reg[..., 3], 0.0) / 2
    return tf.stack([reg[..., 0] - h, reg[..., 1] - w, reg[..., 0] + h, reg[..., 1] + w], -1)


def loss_terms(y_true, y_pred, num_classes: int, box_loss: str = "l1"):
    """``(heatmap, offset, size_or_giou)`` losses, each divided by the number of objects."""
    k = num_classes
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    mask = y_true[..., k + 4]
    num = tf.maximum(tf.reduce_sum(mask), 1.0)
    heat = heatmap_focal_loss(y_true[..., :k], y_pred[..., :k]) / num
    t_reg, p_reg = y_true[..., k : k + 4], y_pred[..., k : k + 4]
    offset = tf.reduce_sum(tf.abs(p_reg[..., :2] - t_reg[..., :2]) * mask[..., None]) / num
    if box_loss == "giou":
        box = tf.reduce_sum((1.0 - giou(_centre_box(p_reg), _centre_box(t_reg))) * mask) / num
    else:
        box = tf.reduce_sum(tf.abs(p_reg[..., 2:] - t_reg[..., 2:]) * mask[..., None]) / num
    return heat, offset, box


@keras.saving.register_keras_serializable(package="kerasflow")
class CenterNetLoss(keras.losses.Loss):
    """Heatmap focal loss + ``offset_weight`` x L1 offsets + ``box_weight`` x box loss.

    Args:
        num_classes: ``K``; ``y_true`` is ``(N, h, w, K + 5)``, ``y_pred`` ``(N, h, w, K + 4)``.
        box_loss: ``l1`` on sizes in cells (CenterNet; default weight 0.1) or
            ``giou`` on the centre box (default weight 1).
        offset_weight: weight of the L1 offset term.
        box_weight: weight of the box term (default by ``box_loss``).
    """

    def __init__(
        self,
        num_classes: int,
        box_loss: str = "l1",
        offset_weight: float = 1.0,
        box_weight: float | None = None,
        name: str = "centernet_loss",
        **kwargs,
    ):
        if box_loss not in ("l1", "giou"):
            raise ValueError(f"box_loss must be 'l1' or 'giou'. Received: box_loss={box_loss!r}")
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.box_loss = box_loss
        self.offset_weight = float(offset_weight)
        self.box_weight = float(
            box_weight if box_weight is not None else (0.1 if box_loss == "l1" else 1.0)
        )

    def call(self, y_true, y_pred):
        heat, offset, box = loss_terms(y_true, y_pred, self.num_classes, self.box_loss)
        return heat + self.offset_weight * offset + self.box_weight * box

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            box_loss=self.box_loss,
            offset_weight=self.offset_weight,
            box_weight=self.box_weight,
        )
        return config


TERMS = ("heatmap", "offset", "box")


def _term_value(y_true, y_pred, index: int, num_classes: int, box_loss: str):
    return loss_terms(y_true, y_pred, num_classes, box_loss)[index]


@keras.saving.register_keras_serializable(package="kerasflow")
class CenterNetTerm(keras.metrics.MeanMetricWrapper):
    """One term of :class:`CenterNetLoss` as a metric (``heatmap``, ``offset`` or ``box``)."""

    def __init__(self, term: str, num_classes: int, box_loss: str = "l1", name=None, dtype=None):
        if term not in TERMS:
            raise ValueError(f"term must be one of {TERMS}. Received: term={term!r}")
        self.term, self.num_classes, self.box_loss = term, int(num_classes), box_loss
        default = f"box_{box_loss}_loss" if term == "box" else f"{term}_loss"
        super().__init__(
            _term_value,
            name=name or default,
            dtype=dtype,
            index=TERMS.index(term),
            num_classes=self.num_classes,
            box_loss=box_loss,
        )

    def get_config(self):
        return {
            "term": self.term,
            "num_classes": self.num_classes,
            "box_loss": self.box_loss,
            "name": self.name,
            "dtype": self.dtype,
        }


def term_metrics(num_classes: int, box_loss: str) -> list:
    return [CenterNetTerm(t, num_classes, box_loss) for t in TERMS]
