"""Losses by name: values against hand-computed references, sparse and one-hot labels."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow.errors import ConfigError
from kerasflow.tasks.losses import (
    LOSSES,
    CrossEntropyDiceLoss,
    DiceLoss,
    FocalLoss,
    SparseCategoricalCrossentropy,
    get_loss,
)

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype="float32")
SPARSE = np.array([0, 2])
ONE_HOT = np.eye(3, dtype="float32")[SPARSE]


def test_registry_names():
    assert set(LOSSES) == {
        "sparse_categorical_crossentropy",
        "categorical_crossentropy",
        "binary_crossentropy",
        "focal",
        "dice",
        "ce_dice",
    }


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ConfigError, match="Choose one of: binary_crossentropy, categorical"):
        get_loss("hinge_it")


def test_bad_parameter_is_config_error():
    with pytest.raises(ConfigError, match="gamma"):
        get_loss("focal", gamma=-1)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        get_loss("dice", colour="red")


def test_sparse_ce_matches_keras_and_smooths():
    expected = -np.mean(np.log([0.7, 0.6]))
    plain = get_loss("sparse_categorical_crossentropy")
    assert isinstance(plain, SparseCategoricalCrossentropy)  # ours: takes one-hot (MixUp) too
    assert float(plain(SPARSE, PROBS)) == pytest.approx(expected, rel=1e-5)
    keras_plain = keras.losses.SparseCategoricalCrossentropy()(SPARSE, PROBS)
    assert float(plain(SPARSE, PROBS)) == pytest.approx(float(keras_plain), rel=1e-5)
    assert float(plain(ONE_HOT, PROBS)) == pytest.approx(expected, rel=1e-5)
    smoothed = get_loss("sparse_categorical_crossentropy", label_smoothing=0.3)
    assert isinstance(smoothed, SparseCategoricalCrossentropy)
    target = ONE_HOT * 0.7 + 0.1
    manual = -np.mean(np.sum(target * np.log(PROBS), axis=-1))
    assert float(smoothed(SPARSE, PROBS)) == pytest.approx(manual, rel=1e-5)
    assert float(smoothed(SPARSE[:, None], PROBS)) == pytest.approx(manual, rel=1e-5)
    keras_ref = keras.losses.CategoricalCrossentropy(label_smoothing=0.3)(ONE_HOT, PROBS)
    assert float(smoothed(ONE_HOT, PROBS)) == pytest.approx(float(keras_ref), rel=1e-5)


def test_categorical_and_binary_ce_by_name():
    ce = get_loss("categorical_crossentropy", label_smoothing=0.1)
    assert ce.get_config()["label_smoothing"] == 0.1
    assert float(get_loss("categorical_crossentropy")(ONE_HOT, PROBS)) == pytest.approx(
        -np.mean(np.log([0.7, 0.6])), rel=1e-5
    )
    bce = get_loss("binary_crossentropy")
    assert float(bce([[1.0], [0.0]], [[0.8], [0.4]])) == pytest.approx(
        -np.mean([np.log(0.8), np.log(0.6)]), rel=1e-4
    )


def test_focal_loss_values():
    gamma = 2.0
    manual = np.mean([-(0.3**gamma) * np.log(0.7), -(0.4**gamma) * np.log(0.6)])
    assert float(FocalLoss(gamma)(SPARSE, PROBS)) == pytest.approx(manual, rel=1e-5)
    assert float(FocalLoss(gamma)(ONE_HOT, PROBS)) == pytest.approx(manual, rel=1e-5)
    # gamma 0 is cross-entropy; per-class alpha weights the true class.
    assert float(FocalLoss(0.0)(SPARSE, PROBS)) == pytest.approx(
        -np.mean(np.log([0.7, 0.6])), rel=1e-5
    )
    weighted = FocalLoss(gamma, alpha=[0.25, 1.0, 2.0])(SPARSE, PROBS)
    manual_w = np.mean([-0.25 * 0.3**gamma * np.log(0.7), -2.0 * 0.4**gamma * np.log(0.6)])
    assert float(weighted) == pytest.approx(manual_w, rel=1e-5)


def test_dice_loss_segmentation():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 4, 4))
    perfect = np.eye(3, dtype="float32")[labels]
    assert float(DiceLoss(smooth=0.0)(labels, perfect)) == pytest.approx(0.0, abs=1e-6)
    probs = rng.dirichlet(np.ones(3), (2, 4, 4)).astype("float32")
    # Reference: per-example dice over pixels, mean over classes, mean over batch.
    inter = (perfect * probs).sum(axis=(1, 2))
    total = perfect.sum(axis=(1, 2)) + probs.sum(axis=(1, 2))
    manual = np.mean(1 - ((2 * inter + 1) / (total + 1)).mean(-1))
    assert float(DiceLoss()(labels, probs)) == pytest.approx(manual, rel=1e-5)
    assert float(DiceLoss()(labels[..., None], probs)) == pytest.approx(manual, rel=1e-5)
    ce = -np.log(np.take_along_axis(probs, labels[..., None], -1)).mean()
    combined = CrossEntropyDiceLoss(dice_weight=0.5)(labels, probs)
    assert float(combined) == pytest.approx(ce + 0.5 * manual, rel=1e-5)


@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "focal", "dice", "ce_dice"])
def test_custom_losses_serialize(name):
    loss = get_loss(name, label_smoothing=0.1) if name != "dice" else get_loss(name, smooth=2.0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    labels = np.array([[0, 1], [2, 1]])
    probs = np.full((2, 2, 2, 3), 1 / 3, dtype="float32")
    assert float(restored(labels[:, :, None], probs)) == pytest.approx(
        float(loss(labels[:, :, None], probs)), rel=1e-6
    )


def test_trains_a_tiny_segmentation_model_with_ce_dice():
    from kerasflow import models

    model = models.build("unet", (16, 16, 1), 2, depth=1, width=4)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=get_loss("ce_dice"))
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 1), dtype="float32")
    y = (x[..., 0] > 0.5).astype("int32")
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
