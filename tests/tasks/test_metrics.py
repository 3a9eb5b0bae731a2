"""Metrics by name against scikit-learn, for sparse/one-hot labels and per-pixel outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from kerasflow.errors import ConfigError
from kerasflow.tasks.metrics import (
    AUC,
    METRICS,
    Accuracy,
    ConfusionMatrixScore,
    TopKAccuracy,
    get_metric,
)

C = 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, 64)
    probs = rng.dirichlet(np.ones(C), 64).astype("float32")
    # Make predictions better than chance but imperfect.
    probs[np.arange(32), labels[:32]] += 1.0
    probs /= probs.sum(-1, keepdims=True)
    return labels, probs


def _value(metric, y_true, y_pred, sample_weight=None, batches=1):
    for t, p in zip(np.array_split(y_true, batches), np.array_split(y_pred, batches), strict=True):
        metric.update_state(t, p, sample_weight)
    return float(metric.result())


def test_registry_names():
    assert set(METRICS) == {
        "accuracy",
        "top_k",
        "precision",
        "recall",
        "f1",
        "auc",
        "mean_iou",
        "dice",
    }


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ConfigError, match=r"Choose one of: accuracy, auc, dice, f1"):
        get_metric("kappa", 3)
    with pytest.raises(ConfigError, match="num_classes must be >= 2"):
        get_metric("f1", 1)


def test_accuracy_sparse_and_one_hot(data):
    labels, probs = data
    expected = skm.accuracy_score(labels, probs.argmax(-1))
    metric = get_metric("accuracy", C)
    assert metric.name == "accuracy"
    assert _value(metric, labels, probs, batches=3) == pytest.approx(expected)
    assert _value(Accuracy(), np.eye(C)[labels], probs) == pytest.approx(expected)
    assert _value(Accuracy(), labels[:, None], probs) == pytest.approx(expected)


@pytest.mark.parametrize("name,k", [("top_k", 5), ("top3_accuracy", 3), ("top2", 2)])
def test_top_k(data, name, k):
    labels, probs = data
    metric = get_metric(name, C)
    assert metric.name == f"top{k}_accuracy"
    expected = skm.top_k_accuracy_score(labels, probs, k=min(k, C), labels=range(C))
    assert _value(metric, labels, probs) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
def test_macro_scores_match_sklearn(data, name):
    labels, probs = data
    preds = probs.argmax(-1)
    sk = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[name]
    expected = sk(labels, preds, average="macro", zero_division=0)
    assert _value(get_metric(name, C), labels, probs, batches=4) == pytest.approx(expected, 1e-6)
    # Classes absent from labels and predictions do not drag the macro average down.
    assert _value(get_metric(name, C + 2), labels, np.pad(probs, ((0, 0), (0, 2)))) == (
        pytest.approx(expected, 1e-6)
    )


def test_sample_weight_matches_sklearn(data):
    labels, probs = data
    weights = np.linspace(0.1, 2.0, len(labels)).astype("float32")
    expected = skm.f1_score(labels, probs.argmax(-1), average="macro", sample_weight=weights)
    assert _value(get_metric("f1", C), labels, probs, weights) == pytest.approx(expected, 1e-5)
    acc = skm.accuracy_score(labels, probs.argmax(-1), sample_weight=weights)
    assert _value(get_metric("accuracy", C), labels, probs, weights) == pytest.approx(acc, 1e-6)


def test_segmentation_mean_iou_and_dice():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 3, (2, 8, 8))
    probs = rng.dirichlet(np.ones(3), (2, 8, 8)).astype("float32")
    preds = probs.argmax(-1)
    masks_ignored = masks.copy()
    masks_ignored[0, 0, :] = 255  # an ignore label is skipped
    keep = masks_ignored.ravel() != 255
    t, p = masks_ignored.ravel()[keep], preds.ravel()[keep]
    iou = skm.jaccard_score(t, p, average="macro")
    dice = skm.f1_score(t, p, average="macro")
    assert _value(get_metric("mean_iou", 3), masks_ignored, probs) == pytest.approx(iou, 1e-6)
    assert _value(get_metric("dice", 3), masks_ignored[..., None], probs) == pytest.approx(
        dice, 1e-6
    )
    reference = keras.metrics.MeanIoU(3, sparse_y_pred=False)
    reference.update_state(masks, probs)
    assert _value(get_metric("mean_iou", 3), masks, probs) == pytest.approx(
        float(reference.result()), 1e-6
    )


def test_auc_binary_and_multiclass(data):
    labels, probs = data
    micro = skm.roc_auc_score(np.eye(C)[labels].ravel(), probs.ravel())
    auc = get_metric("auc", C, num_thresholds=2000)
    assert _value(auc, labels, probs) == pytest.approx(micro, abs=2e-3)
    binary_labels = (labels % 2).astype("int32")
    binary = np.stack([1 - probs[:, 0], probs[:, 0]], -1)
    expected = skm.roc_auc_score(binary_labels, binary[:, 1])
    auc = get_metric("auc", 2, num_thresholds=2000)
    assert _value(auc, binary_labels, binary) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize(
    "metric",
    [Accuracy(), TopKAccuracy(3), ConfusionMatrixScore(4, "iou", name="mean_iou"), AUC(4)],
    ids=lambda m: m.name,
)
def test_metrics_serialize(metric):
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()


def test_fit_reports_every_metric_by_name():
    from kerasflow import models

    model = models.build("simple_cnn", (8, 8, 1), C, width=4, depth=1, dense_units=0)
    names = ["accuracy", "top3_accuracy", "precision", "recall", "f1", "auc", "mean_iou", "dice"]
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=[get_metric(n, C) for n in names],
    )
    rng = np.random.default_rng(0)
    history = model.fit(
        rng.random((16, 8, 8, 1), dtype="float32"), rng.integers(0, C, 16), epochs=1, verbose=0
    )
    for name in names:
        value = history.history[name][0]
        assert 0.0 <= value <= 1.0, name
