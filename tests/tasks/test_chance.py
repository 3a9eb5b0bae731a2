"""The champion gate's chance levels: what a constant prediction scores, per task."""

import numpy as np
import pytest

from kerasflow import tasks
from kerasflow.tasks.base import CHANCE_MARGIN
from kerasflow.tasks.classification import classification_report
from kerasflow.tasks.multilabel_report import multilabel_report
from kerasflow.tasks.segmentation import segmentation_report

NAMES = ["a", "b", "c", "d"]


def _one_hot(ids, k):
    return np.eye(k)[np.asarray(ids)]


def test_classification_chance_is_the_majority_share():
    y = np.array([0] * 6 + [1] * 2 + [2] + [3])  # majority share 0.6, not 1/4
    task = tasks.get("classification")
    constant = classification_report(y, _one_hot([0] * 10, 4), NAMES)
    assert constant["accuracy"] == pytest.approx(0.6)
    assert task.chance_level(constant) == pytest.approx(0.6)
    check = task.beats_chance(constant)
    assert not check.passed and check.metric == "accuracy"
    assert check.score == pytest.approx(0.6) and check.chance == pytest.approx(0.6)
    assert "accuracy 0.600" in check.reason and "chance level 0.600" in check.reason
    assert task.beats_chance(classification_report(y, _one_hot(y, 4), NAMES)).passed
    # 0.8 is 20 points above a majority share of 0.6: clearly better.
    seven = classification_report(y, _one_hot([0] * 6 + [1] * 2 + [0, 0], 4), NAMES)
    assert seven["accuracy"] == pytest.approx(0.8) and task.beats_chance(seven).passed
    # Within the margin of chance is still chance.
    near = {**constant, "accuracy": 0.6 + CHANCE_MARGIN / 2}
    assert not task.beats_chance(near).passed


def test_classification_one_class_split_never_beats_chance():
    task = tasks.get("classification")
    report = classification_report([1, 1, 1], _one_hot([1, 1, 1], 2), ["x", "y"])
    assert report["accuracy"] == 1.0 and task.chance_level(report) == 1.0
    assert not task.beats_chance(report).passed


def test_multilabel_chance_is_the_best_constant_label_set():
    task = tasks.get("multilabel")
    labels = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1]])
    # Always predicting {label 0}: TP 4, FP 0, FN 3 -> F1 8/11; {0, 1}: TP 6, FP 2, FN 1 -> 12/15.
    always = multilabel_report(labels, np.tile([0.9, 0.9, 0.1], (4, 1)), ["p", "q", "r"])
    assert always["micro_f1"] == pytest.approx(12 / 15)
    assert task.chance_level(always) == pytest.approx(12 / 15)
    assert not task.beats_chance(always).passed
    perfect = multilabel_report(labels, labels * 0.8 + 0.1, ["p", "q", "r"])
    check = task.beats_chance(perfect)
    assert check.passed and check.metric == "micro_f1" and check.reason == ""


def test_segmentation_chance_is_the_majority_pixel_class():
    task = tasks.get("segmentation")
    masks = np.zeros((2, 4, 4), int)
    masks[0, :2] = 1  # 8 of 32 pixels are class 1, class 2 is absent
    everywhere_0 = segmentation_report(masks, _one_hot(np.zeros_like(masks), 3), ["bg", "x", "y"])
    # IoU(bg) = 24/32, IoU(x) = 0, y absent: mean 0.375.
    assert everywhere_0["mean_iou"] == pytest.approx(0.375)
    assert task.chance_level(everywhere_0) == pytest.approx(0.375)
    assert not task.beats_chance(everywhere_0).passed
    exact = segmentation_report(masks, _one_hot(masks, 3), ["bg", "x", "y"])
    assert exact["mean_iou"] == 1.0 and task.beats_chance(exact).passed


def test_detection_chance_is_no_boxes():
    task = tasks.get("detection")
    assert task.chance_level({"map50": 0.0}) == 0.0
    assert not task.beats_chance({"map50": 0.01}).passed
    assert task.beats_chance({"map50": 0.4}).passed
    assert not task.beats_chance({"map50": float("nan")}).passed


def test_unknown_chance_or_missing_score_passes():
    task = tasks.get("classification")
    assert task.beats_chance({"per_class": {}}).passed
