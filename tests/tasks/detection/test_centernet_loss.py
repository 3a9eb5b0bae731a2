"""CenterNet targets and losses on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasflow.tasks.detection import centernet_loss as D
from kerasflow.tasks.detection import targets as T


def test_targets_put_a_unit_peak_and_box_values_at_the_centre_cell():
    fn = T.make_targets_fn(num_classes=2, out_hw=(8, 8))
    # One box of class 1: rows 0.25..0.75, cols 0.125..0.375 -> cells 2..6 x 1..3, centre (4, 2).
    boxes = tf.constant([[0.25, 0.125, 0.75, 0.375], [0, 0, 0, 0]])
    target = fn(boxes, tf.constant([1, -1])).numpy()
    assert target.shape == (8, 8, 2 + 5)
    assert target[..., 0].max() == 0  # class 0 has no object
    assert target[4, 2, 1] == 1.0 and (target[..., 1] == 1.0).sum() == 1
    assert 0 < target[3, 2, 1] < 1 and target[3, 2, 1] == target[5, 2, 1]
    np.testing.assert_allclose(target[4, 2, 2:], [0.0, 0.0, 4.0, 2.0, 1.0])
    assert target[..., 6].sum() == 1
    # A centre off the cell grid keeps the sub-cell offset.
    target = fn(tf.constant([[0.3, 0.3, 0.5, 0.6]]), tf.constant([0])).numpy()
    np.testing.assert_allclose(target[3, 3, 2:6], [0.2, 0.6, 1.6, 2.4], atol=1e-5)


def test_targets_of_an_image_without_boxes_are_zero():
    fn = T.make_targets_fn(num_classes=2, out_hw=(4, 4))
    target = fn(tf.zeros((3, 4)), tf.constant([-1, -1, -1])).numpy()
    assert np.isfinite(target).all() and target.max() == 0


def test_gaussian_radius_matches_centernet():
    # CenterNet's gaussian_radius((10, 10), 0.7) = min(19.07, 36.73, 2.73), floored to 2.
    assert float(T.gaussian_radius(tf.constant(10.0), tf.constant(10.0))) == 2.0
    assert float(T.gaussian_radius(tf.constant(4.0), tf.constant(4.0))) == 1.0
    assert float(T.gaussian_radius(tf.constant(1.0), tf.constant(1.0))) == 0.0


def test_focal_loss_on_a_hand_made_heatmap():
    target = tf.constant([[1.0, 0.5], [0.0, 0.0]])
    logits = tf.constant([[0.0, 0.0], [math.log(0.25 / 0.75), 10.0]])
    p = np.array([[0.5, 0.5], [0.25, 1 - 1e-4]])  # the last one is clamped
    expected = (
        -math.log(0.5) * 0.5**2  # positive
        - math.log(0.5) * 0.5**2 * 0.5**4  # near the centre: (1 - 0.5)^4
        - math.log(0.75) * 0.25**2  # a plain negative
        - math.log(1 - p[1, 1]) * p[1, 1] ** 2  # a confident mistake, bounded
    )
    got = float(D.heatmap_focal_loss(target, logits))
    assert got == pytest.approx(expected, rel=1e-4)  # float32 logs


def test_giou_hand_cases():
    a = tf.constant([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    b = tf.constant([[0.0, 0.0, 2.0, 2.0], [0.0, 2.0, 1.0, 3.0], [1.0, 1.0, 3.0, 3.0]])
    np.testing.assert_allclose(
        D.giou(a, b).numpy(), [1.0, -1.0 / 3.0, 1.0 / 7.0 - 2.0 / 9.0], atol=1e-6
    )


def _perfect_prediction(target, k):
    heat = np.where(target[..., :k] >= 1.0, 20.0, -20.0)
    return np.concatenate([heat, target[..., k : k + 4]], -1).astype(np.float32)


def test_centernet_loss_terms_on_hand_made_predictions():
    k = 1
    fn = T.make_targets_fn(k, (8, 8))
    target = fn(tf.constant([[0.25, 0.25, 0.5, 0.5]]), tf.constant([0])).numpy()[None]
    pred = _perfect_prediction(target, k)
    heat, offset, box = (float(t) for t in D.loss_terms(target, pred, k))
    assert offset == 0 and box == 0 and heat < 0.02
    # Size off by (1, -2) cells and offset by (0.5, 0): L1 sums over the one object.
    pred[0, 3, 3, 1:5] += [0.5, 0.0, 1.0, -2.0]
    heat, offset, box = (float(t) for t in D.loss_terms(target, pred, k))
    assert offset == pytest.approx(0.5) and box == pytest.approx(3.0)
    loss = D.CenterNetLoss(k)
    assert float(loss(target, pred)) == pytest.approx(heat + 0.5 + 0.1 * 3.0, rel=1e-5)
    # GIoU: a 2 x 2 cell box predicted as 3 x 2 at the same centre -> 1 - 4/6.
    pred = _perfect_prediction(target, k)
    pred[0, 3, 3, 3] += 1.0
    _, _, box = D.loss_terms(target, pred, k, box_loss="giou")
    assert float(box) == pytest.approx(1 - 4 / 6, rel=1e-5)
    restored = D.CenterNetLoss.from_config(D.CenterNetLoss(k, box_loss="giou").get_config())
    assert restored.box_loss == "giou" and restored.box_weight == 1.0


def test_loss_name_errors_are_config_errors():
    from kerasflow import tasks
    from kerasflow.config import build_config
    from kerasflow.errors import ConfigError

    detection = tasks.get("detection")
    cfg = build_config({"compile": {"loss": {"name": "dice"}}})
    with pytest.raises(ConfigError, match="not a loss for experiment.task 'detection'.*centernet"):
        detection.loss(cfg.compile, 2)
    cfg = build_config({"compile": {"loss": {"name": "centernet", "params": {"box_loss": "l2"}}}})
    with pytest.raises(ConfigError, match="box_loss"):
        detection.loss(cfg.compile, 2)
