"""Random augmentation by target kind: masks move with the image, class and multi-hot targets do not."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasflow.pipelines import from_arrays, prepare
from kerasflow.pipelines import transforms as T
from kerasflow.pipelines.augment import apply_op, describe_op
from tests.pipelines.helpers import ALL_TRAIN, data_config

K = 5


def _tagged(n=16, size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    labels = (rng.random((n, K)) < 0.4).astype(np.uint8)
    labels[0] = 0  # one image without labels
    return images, labels


def _find_seed(pred):
    for i in range(100):
        seed = tf.constant([i, 7], tf.int64)
        if pred(seed):
            return seed
    raise AssertionError("no seed found")


def test_geometric_ops_move_the_mask_and_leave_other_targets_alone():
    image = tf.constant(np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3) / 72.0)
    mask = tf.constant(np.tile(np.arange(6, dtype=np.int32), (4, 1)))
    aug = data_config(augment={"horizontal_flip": True}).augment
    seed = _find_seed(lambda s: bool(T.uniform(s) < 0.5))  # a seed that flips
    flipped, moved = apply_op("horizontal_flip", aug, image, mask, seed)
    np.testing.assert_array_equal(moved.numpy(), mask.numpy()[:, ::-1])
    np.testing.assert_array_equal(flipped.numpy(), image.numpy()[:, ::-1])
    alone, none = apply_op("horizontal_flip", aug, image, None, seed)
    assert none is None
    np.testing.assert_array_equal(alone.numpy(), flipped.numpy())
    assert describe_op("rotation", data_config(augment={"rotation": 0.1}).augment) == "rotation 0.1"


def test_multi_hot_targets_pass_unchanged_through_geometric_ops():
    images, labels = _tagged()
    cfg = data_config(image_size=[8, 8], channels=3, batch_size=16, shuffle_buffer=0,
                      split=ALL_TRAIN, augment={"horizontal_flip": True, "vertical_flip": True,
                                                "rotation": 0.25, "zoom": 0.2})  # fmt: skip
    data = prepare(cfg, seed=1, source=from_arrays(images, labels, name="t"), target="multi_hot")
    assert not data.one_hot_targets
    plan = data.plan_text(["train"])
    assert "(image, in 0..1 float, then float32 0..255)" in plan and "one-hot" not in plan
    x, y = next(iter(data.dataset("train")))
    assert y.dtype == tf.float32 and y.shape == (16, K)
    np.testing.assert_array_equal(y.numpy(), labels)  # no shuffle buffer: dataset order
    assert not np.allclose(x.numpy(), images)  # the images did move


def test_masks_still_move_under_the_same_ops(seg_folder):
    cfg = data_config(source=str(seg_folder), image_size=[16, 16], channels=3, batch_size=6,
                      shuffle_buffer=0, split=ALL_TRAIN,
                      augment={"horizontal_flip": True, "rotation": 0.25})  # fmt: skip
    data = prepare(cfg, seed=0, target="mask")
    _, m = next(iter(data.dataset("train")))
    still = data.labels("train")
    assert m.shape == still.shape and not np.array_equal(m.numpy(), still)


@pytest.mark.parametrize("op", ["mixup", "cutmix"])
def test_mixing_multi_hot_targets_gives_convex_mixes(op):
    images, labels = _tagged(n=8, size=6, seed=2)
    cfg = data_config(image_size=[6, 6], channels=3, batch_size=8, shuffle_buffer=0,
                      split=ALL_TRAIN, augment={op: 0.8})  # fmt: skip
    data = prepare(cfg, seed=5, source=from_arrays(images, labels, name="t"), target="multi_hot")
    assert not data.one_hot_targets and f"{op} alpha=0.8" in data.plan_text(["train"])
    x, y = (v.numpy().astype(np.float64) for v in next(iter(data.dataset("train"))))
    X, Y = images.astype(np.float64), labels.astype(np.float64)
    assert y.min() >= 0 and y.max() <= 1
    weights = []
    for i in range(len(X)):
        # the partner j and the weight w with x_i = w X_i + (1 - w) X_j (per pixel for CutMix)
        for j in range(len(X)):
            if op == "mixup":
                d = (X[i] - X[j]).ravel()
                w = 1.0 if j == i else float(d @ (x[i] - X[j]).ravel() / (d @ d))
                if np.allclose(w * X[i] + (1 - w) * X[j], x[i], atol=1e-3):
                    break
            else:
                from_i = np.isclose(x[i], X[i]).all(-1)
                if (from_i | np.isclose(x[i], X[j]).all(-1)).all():
                    w = 1.0 if j == i else from_i.mean()
                    break
        else:
            raise AssertionError(f"example {i} is not a mix of two images")
        np.testing.assert_allclose(y[i], w * Y[i] + (1 - w) * Y[j], atol=1e-5)
        weights.append(w)
    if op == "mixup":
        # One weight per batch. The tag images are sums of blocks, so an example can also
        # decompose over another partner with another weight: most share the batch's weight.
        share = np.isclose(weights, np.median(weights), atol=1e-4).mean()
        assert share >= 0.75, weights
    assert any(0.0 < w < 1.0 for w in weights)  # some targets are real mixes, not 0/1
