"""The tuner's search runs unchanged on a detection config."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_random_search_on_a_detection_config(tmp_path):
    import kerasflow
    from kerasflow.config import build_config

    cfg = build_config(
        {
            "experiment": {
                "name": "det-tune",
                "task": "detection",
                "work_dir": str(tmp_path / "runs"),
            },
            "data": {
                "source": "synthetic:shapes_detection",
                "root": str(tmp_path / "data"),
                "image_size": [64, 64],
                "channels": 3,
                "resize": "pad",
                "batch_size": 8,
                "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
                "detection": {"synthetic_images": 24, "max_boxes": 8},
            },
            "model": {
                "name": "centernet",
                "params": {
                    "backbone_params": {"width_multiplier": 0.25},
                    "neck_filters": 16,
                    "head_filters": 16,
                },
            },
            "compile": {"loss": "centernet"},
            "train": {"epochs": 1, "verbose": 0, "early_stopping": {"enabled": False}},
            "tracking": {
                "uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "champion_metric": "test_map50",
            },
            "tune": {
                "tuner": "random",
                "max_trials": 2,
                "objective": "val_loss",
                "directory": str(tmp_path / "tuning"),
                "space": {"compile.optimizer.learning_rate": {"choice": [0.001, 0.003]}},
            },
        }
    )
    result = kerasflow.tune(cfg)
    assert result.best_hyperparameters["compile.optimizer.learning_rate"] in (0.001, 0.003)
    assert 0.0 <= result.test_metrics["test_map50"] <= 1.0
    assert "test_loss" in result.test_metrics
