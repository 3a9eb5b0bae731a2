"""Corruption robustness for every task (untrained tiny models: the plumbing and the metric)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow import tasks
from kerasflow.config import AdversarialEvalConfig, CorruptionEvalConfig, build_config
from kerasflow.pipelines import synthetic
from kerasflow.training import adversarial, robustness

pytestmark = pytest.mark.slow

SECTION = CorruptionEvalConfig(names=["gaussian_noise", "contrast"], severities=[1, 5])


def _setup(data: dict, model: dict, task_name: str):
    cfg = build_config(
        {"experiment": {"task": task_name}, "data": {"batch_size": 16, **data}, "model": model}
    )
    task = tasks.get(task_name)
    keras.utils.set_random_seed(0)
    prepared = task.prepare(cfg.data, 0)
    built = task.build_model(cfg, prepared)
    data = task.training_data(prepared, built)
    return task, built, data, task.contract(built, data)


def _check(task, model, data, contract, headline: str, section=SECTION):
    result = robustness.evaluate_corruptions(model, data, "test", task, contract, section, seed=3)
    assert result["metric"] == headline
    assert result["clean"] == task.evaluate(model, data, "test", contract)[headline]
    values = [v for s in result["scores"].values() for v in s]
    assert len(values) == len(section.names) * len(section.severities)
    assert all(0.0 <= v <= 1.0 for v in values)
    metrics = robustness.scalar_metrics({"robustness": {"corruption": result}})
    assert f"test_corruption_mean_{headline}" in metrics
    return result


def test_segmentation_scores_mean_iou_under_corruptions(tmp_path):
    root = synthetic.write_shapes_segmentation(tmp_path / "seg", num_images=40, size=24)
    task, model, data, contract = _setup(
        {"source": str(root), "image_size": [24, 24], "channels": 3},
        {"name": "unet", "params": {"depth": 2, "width": 4}},
        "segmentation",
    )  # fmt: skip
    _check(task, model, data, contract, "mean_iou")


def test_multilabel_scores_micro_f1_under_corruptions_and_attacks(tmp_path):
    root = synthetic.write_shapes_multilabel(tmp_path / "tags", num_images=60, size=24, seed=1)
    task, model, data, contract = _setup(
        {"source": str(root / "labels.csv"), "image_size": [24, 24], "channels": 3},
        {"name": "simple_cnn", "params": {"width": 4, "depth": 1, "dense_units": 8}},
        "multilabel",
    )
    _check(task, model, data, contract, "micro_f1")
    attacks = adversarial.evaluate_attacks(
        model, data, "test", task, contract, AdversarialEvalConfig(epsilons=[4], pgd_steps=2)
    )
    assert attacks["metric"] == "micro_f1" and attacks["num_examples"] == data.size("test")
    assert attacks["clean"] == pytest.approx(
        task.evaluate(model, data, "test", contract)["micro_f1"]
    )


def test_detection_scores_map50_of_its_box_data_under_corruptions(tmp_path):
    root = synthetic.write_shapes_detection(tmp_path / "det", num_images=24, size=64, seed=1)
    task, model, data, contract = _setup(
        {"source": str(root / "annotations.json"), "image_size": [64, 64], "channels": 3,
         "resize": "pad", "detection": {"max_boxes": 8},
         "split": {"train": 0.5, "validation": 0.25, "test": 0.25}},
        {"name": "centernet", "params": {"backbone_params": {"width_multiplier": 0.25},
                                         "neck_filters": 16, "head_filters": 16}},
        "detection",
    )  # fmt: skip
    one = CorruptionEvalConfig(names=["pixelate"], severities=[5])
    result = _check(task, model, data, contract, "map50", one)
    assert np.isfinite(result["mean"])
