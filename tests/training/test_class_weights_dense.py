"""train.class_weight for segmentation (per pixel) and multilabel (per label), and EMA weights.

Small in-memory data; the fits are a few steps of tiny models.
"""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

import kerasflow
from kerasflow import pipelines, tasks
from kerasflow.errors import ConfigError
from kerasflow.pipelines.sources import from_arrays
from kerasflow.tasks.losses import PerLabelBinaryCrossentropy
from kerasflow.tasks.multilabel import positive_weights, with_positive_weights
from kerasflow.tasks.segmentation import pixel_class_weights, with_pixel_weights
from kerasflow.tracking.tracker import RunTracker
from kerasflow.training.compile import build_compiled_model
from kerasflow.training.fit import (
    RunState,
    build_callbacks,
    fit_model,
    monitor_for,
    restore_best,
)

TINY = [
    "data.image_size=[8,8]",
    "data.batch_size=4",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "compile.schedule.warmup_epochs=0",
    "train.verbose=0",
]


def _segmentation(*extra):
    cfg = kerasflow.load_config(
        None,
        [
            "experiment.task=segmentation",
            "data.source=synthetic:shapes_segmentation",
            "model.name=unet",
            "model.params={width: 4, depth: 1}",
            "compile.loss.name=auto",
            "compile.metrics=auto",
            *TINY,
            *extra,
        ],
    )
    rng = np.random.default_rng(0)
    masks = np.zeros((12, 8, 8), np.int64)
    masks[:, :2, :2] = 1
    masks[:6, 4:, 4:] = 2
    source = from_arrays(
        rng.integers(0, 255, (12, 8, 8, 1), dtype=np.uint8),
        masks=masks,
        class_names=["bg", "a", "b"],
    )
    return cfg, pipelines.prepare(cfg.data, 0, source=source, target="mask")


def test_pixel_class_weights_are_the_balanced_rule_per_pixel():
    masks = np.array([[[0, 0], [0, 1]], [[0, 0], [2, 2]]])  # 5 / 1 / 2 pixels of 8
    table = pixel_class_weights("balanced", masks, ["bg", "a", "b"])
    np.testing.assert_allclose(table, [8 / 15, 8 / 3, 8 / 6], rtol=1e-6)
    by_name = pixel_class_weights({"a": 4.0}, masks, ["bg", "a", "b"])
    np.testing.assert_array_equal(by_name, [1.0, 4.0, 1.0])
    with pytest.raises(ConfigError, match=r"\['c'\]"):
        pixel_class_weights({"c": 2.0}, masks, ["bg", "a", "b"])
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors((tf.zeros((2, 2, 2, 1)), tf.constant(masks, tf.int32)))
    _, _, weights = next(iter(with_pixel_weights(ds, table)))
    np.testing.assert_allclose(weights.numpy(), table[masks], rtol=1e-6)


@pytest.mark.slow
def test_segmentation_fits_with_balanced_pixel_weights():
    cfg, prepared = _segmentation("train.class_weight=balanced")
    task = tasks.get("segmentation")
    task.check_config(cfg)
    masks = prepared.labels("train")
    counts = np.bincount(masks.reshape(-1), minlength=3)
    ds, class_weight = task.weighted_training("balanced", prepared, prepared.dataset("train"))
    assert class_weight is None  # the weights travel per pixel, not as Keras' class_weight
    _, batch_masks, weights = next(iter(ds))
    expected = counts.sum() / (3 * counts)
    np.testing.assert_allclose(weights.numpy(), expected[batch_masks.numpy()], rtol=1e-6)
    history = fit_model(build_compiled_model(cfg, prepared), cfg, prepared, [])
    assert np.isfinite(history.history["loss"]).all()
    # A loss with one value per image cannot take pixel weights: refused before training.
    ce_dice, _ = _segmentation("train.class_weight=balanced", "compile.loss.name=ce_dice")
    with pytest.raises(ConfigError, match="ce_dice"):
        task.check_config(ce_dice)


def _multilabel(*extra):
    cfg = kerasflow.load_config(
        None,
        [
            "experiment.task=multilabel",
            "data.source=synthetic:shapes_multilabel",
            "model.params={width: 4, depth: 1, dense_units: 8}",
            "compile.loss.name=auto",
            "compile.metrics=auto",
            *TINY,
            *extra,
        ],
    )
    rng = np.random.default_rng(1)
    labels = np.zeros((16, 3), np.int64)
    labels[:, 0] = 1  # 16 positives, 0 negatives
    labels[:4, 1] = 1  # 4 positives, 12 negatives
    source = from_arrays(
        rng.integers(0, 255, (16, 8, 8, 1), dtype=np.uint8), labels, class_names=["x", "y", "z"]
    )
    return cfg, pipelines.prepare(cfg.data, 0, source=source)


def test_positive_weights_and_the_weighted_binary_cross_entropy():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    # label 0: 3 positives, 1 negative; label 1: 1 / 3; label 2: no positives -> 1.
    np.testing.assert_allclose(
        positive_weights("balanced", targets, ["p", "q", "r"]), [1 / 3, 3.0, 1.0]
    )
    np.testing.assert_array_equal(positive_weights({"r": 5.0}, targets, ["p", "q", "r"]), [1, 1, 5])
    import tensorflow as tf

    pos = np.array([0.5, 3.0, 2.0], np.float32)
    y = targets.astype(np.float32)
    p = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.3], [0.2, 0.4, 0.05], [0.8, 0.1, 0.6]], np.float32)
    ds = tf.data.Dataset.from_tensors((tf.zeros((4, 8, 8, 1)), tf.constant(y)))
    _, _, weights = next(iter(with_positive_weights(ds, pos)))
    loss = PerLabelBinaryCrossentropy()(y, p, sample_weight=weights)
    hand = -(pos * y * np.log(p) + (1 - y) * np.log(1 - p))
    assert float(loss) == pytest.approx(hand.mean(), rel=1e-5)
    # Unweighted it is Keras' binary cross-entropy.
    plain = keras.losses.BinaryCrossentropy()(y, p)
    assert float(PerLabelBinaryCrossentropy()(y, p)) == pytest.approx(float(plain), rel=1e-5)


@pytest.mark.slow
def test_multilabel_fits_with_balanced_positive_weights():
    cfg, prepared = _multilabel("train.class_weight=balanced")
    task = tasks.get("multilabel")
    task.check_config(cfg)
    model = build_compiled_model(cfg, prepared)
    assert isinstance(model.loss, PerLabelBinaryCrossentropy)
    _, _, weights = next(
        iter(task.weighted_training("balanced", prepared, prepared.dataset("train"))[0])
    )
    expected = positive_weights("balanced", prepared.labels("train"), ["x", "y", "z"])
    assert expected[1] > 1.0  # the rare label weighs more
    assert set(np.unique(weights.numpy()[:, 1])) <= {1.0, float(expected[1])}
    history = fit_model(model, cfg, prepared, [])
    assert np.isfinite(history.history["loss"]).all()
    # Without class_weight the loss is Keras' own, as before.
    plain_cfg, _ = _multilabel()
    assert isinstance(
        build_compiled_model(plain_cfg, prepared).loss, keras.losses.BinaryCrossentropy
    )
    focal, _ = _multilabel("train.class_weight=balanced", "compile.loss.name=focal")
    with pytest.raises(ConfigError, match="binary_crossentropy"):
        task.check_config(focal)


class _RawWeights(keras.callbacks.Callback):
    """The raw (trained, not averaged) weights after every batch."""

    def __init__(self):
        super().__init__()
        self.batches: list[list[np.ndarray]] = []
        self.ends: list[int] = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append([w.numpy().copy() for w in self.model.trainable_weights])

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(len(self.batches))


class _FirstBackup(keras.callbacks.Callback):
    """A copy of the resume backup's weights as the first epoch left them."""

    def __init__(self, backup_dir, copy):
        super().__init__()
        self.backup, self.copy = backup_dir / "latest.weights.h5", copy

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            shutil.copy(self.backup, self.copy)


@pytest.mark.slow
def test_ema_weights_are_what_the_run_keeps(tmp_path):
    """With compile.optimizer.ema the restored best model holds the EMA of the raw weights.

    The resume backup holds the raw weights in the model (training goes on from them).
    """
    cfg = kerasflow.load_config(
        None,
        [
            *TINY,
            "model.params={width: 4, depth: 1, dense_units: 8}",
            "train.epochs=3",
            "compile.optimizer.ema=true",
            "compile.optimizer.ema_momentum=0.5",
        ],
    )
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 12)
    source = from_arrays(rng.integers(0, 255, (36, 8, 8, 1), dtype=np.uint8), labels)
    prepared = pipelines.prepare(cfg.data, 0, source=source)
    model = build_compiled_model(cfg, prepared)
    callbacks, best_path, monitor, _ = build_callbacks(
        cfg, RunTracker(None, None), RunState(None), tmp_path, prepared
    )
    raw = _RawWeights()
    first = _FirstBackup(tmp_path / "backup", tmp_path / "first.weights.h5")
    history = fit_model(model, cfg, prepared, [raw, *callbacks, first])
    # The EMA by hand: the first step takes the weights, then m * average + (1 - m) * weights.
    averages, ema = [], None
    for weights in raw.batches:
        ema = (
            weights
            if ema is None
            else [0.5 * a + 0.5 * w for a, w in zip(ema, weights, strict=True)]
        )
        averages.append(ema)
    for got, want in zip(
        model.trainable_weights, averages[-1], strict=True
    ):  # fit ends on the averages
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    restore_best(model, best_path, monitor)
    scores = np.array(history.history[monitor])
    _, mode = monitor_for(cfg, cfg.train.checkpoint, True)
    best = int(np.argmax(scores) if mode == "max" else np.argmin(scores))  # the first best
    step = raw.ends[best] - 1
    final = [w.numpy() for w in model.trainable_weights]
    for got, want in zip(final, averages[step], strict=True):  # the best epoch's averages
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(g, t) for g, t in zip(final, raw.batches[step], strict=True))
    resumed = build_compiled_model(cfg, prepared)
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(str(tmp_path / "first.weights.h5"))
    step = raw.ends[0] - 1
    backed_up = [w.numpy() for w in resumed.trainable_weights]
    for got, want in zip(backed_up, raw.batches[step], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(g, a) for g, a in zip(backed_up, averages[step], strict=True))
