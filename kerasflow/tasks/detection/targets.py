"""CenterNet training targets of a detection example.

For an output map of ``h x w`` cells and ``K`` classes, a ``(h, w, K + 5)``
float32 tensor: ``K`` heatmaps with a Gaussian at each object's centre cell
(peak exactly 1, radius from the box size as in CenterNet), then
``[offset_y, offset_x, height, width]`` in cells at the centre cells, then a
0/1 centre mask.
"""

from __future__ import annotations

import tensorflow as tf


def gaussian_radius(height, width, min_overlap: float = 0.7):
    """CenterNet's radius (in cells) of an object's heatmap Gaussian.

    The reference implementation's formula, kept as is (``(b + sqrt(...)) / 2`` in the
    first two cases), so that targets match published CenterNet training.
    """
    h, w, m = height, width, min_overlap
    b1 = h + w
    c1 = w * h * (1 - m) / (1 + m)
    r1 = (b1 + tf.sqrt(tf.maximum(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (h + w)
    c2 = (1 - m) * w * h
    r2 = (b2 + tf.sqrt(tf.maximum(b2**2 - 16 * c2, 0.0))) / 2
    a3 = 4 * m
    b3 = -2 * m * (h + w)
    c3 = (m - 1) * w * h
    r3 = (b3 + tf.sqrt(tf.maximum(b3**2 - 4 * a3 * c3, 0.0))) / 2
    return tf.maximum(tf.floor(tf.minimum(tf.minimum(r1, r2), r3)), 0.0)


def make_targets_fn(num_classes: int, out_hw, min_overlap: float = 0.7):
    """A function ``(boxes [M, 4], classes [M]) -> (h, w, K + 5)`` dense CenterNet targets.

    Padding rows (class ``-1``) and empty boxes are ignored.
    """
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    k = int(num_classes)

    def targets(boxes, classes):
        keep = (classes >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(tf.cast(boxes, tf.float32), keep)
        classes = tf.boolean_mask(classes, keep)
        scale = tf.constant([out_h, out_w, out_h, out_w], tf.float32)
        cells = boxes * scale
        h = cells[:, 2] - cells[:, 0]
        w = cells[:, 3] - cells[:, 1]
        cy = (cells[:, 0] + cells[:, 2]) / 2
        cx = (cells[:, 1] + cells[:, 3]) / 2
        iy = tf.clip_by_value(tf.floor(cy), 0, out_h - 1)
        ix = tf.clip_by_value(tf.floor(cx), 0, out_w - 1)
        sigma = (2 * gaussian_radius(h, w, min_overlap) + 1) / 6
        ys = tf.range(out_h, dtype=tf.float32)
        xs = tf.range(out_w, dtype=tf.float32)
        dy = (ys[None, :] - iy[:, None]) ** 2  # [n, h]
        dx = (xs[None, :] - ix[:, None]) ** 2  # [n, w]
        two_s2 = (2 * sigma**2)[:, None, None]
        gauss = tf.exp(-(dy[:, :, None] + dx[:, None, :]) / two_s2)  # [n, h, w]
        onehot = tf.one_hot(classes, k)  # [n, k]
        per_box = gauss[..., None] * onehot[:, None, None, :]
        # A zero map first: the max over no boxes (all cropped away) is 0, not -inf.
        heat = tf.reduce_max(tf.concat([tf.zeros([1, out_h, out_w, k]), per_box], 0), axis=0)
        index = tf.cast(tf.stack([iy, ix], -1), tf.int32)
        values = tf.stack([cy - iy, cx - ix, h, w, tf.ones_like(h)], -1)
        reg = tf.scatter_nd(index, values, [out_h, out_w, 5])
        # scatter_nd adds duplicates: two objects on one cell keep the mean of their values.
        count = tf.maximum(reg[..., 4:5], 1.0)
        reg = tf.concat([reg[..., :4] / count, tf.minimum(reg[..., 4:5], 1.0)], -1)
        out = tf.concat([heat, reg], -1)
        out.set_shape([out_h, out_w, k + 5])
        return out

    return targets
