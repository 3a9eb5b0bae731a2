"""The tuner's search runs unchanged on a detection config, with val_loss or val_map50 as objective."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.tasks.detection.helpers import tiny_run


def _config(tmp_path, objective: str, epochs: int = 1):
    from kerasflow.config import build_config

    return build_config(
        tiny_run(
            tmp_path,
            "det-tune",
            data={
                "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
                "detection": {"synthetic_images": 24, "max_boxes": 8},
            },
            train={"epochs": epochs},
            tracking={"champion_metric": "test_map50"},
            tune={
                "tuner": "random",
                "max_trials": 2,
                "objective": objective,
                "directory": str(tmp_path / "tuning"),
                "space": {"compile.optimizer.learning_rate": {"choice": [0.001, 0.003]}},
            },
        )
    )


@pytest.mark.slow
def test_random_search_on_a_detection_config(tmp_path):
    import kerasflow

    result = kerasflow.tune(_config(tmp_path, "val_loss"))
    assert result.best_hyperparameters["compile.optimizer.learning_rate"] in (0.001, 0.003)
    assert 0.0 <= result.test_metrics["test_map50"] <= 1.0
    assert "test_loss" in result.test_metrics


@pytest.mark.slow
def test_val_map50_is_a_detection_search_objective(tmp_path):
    """val_map50 comes from a callback; it reaches the logs before the tuner reads them."""
    import kerasflow

    cfg = _config(tmp_path, "val_map50", epochs=2)
    result = kerasflow.tune(cfg)
    assert (result.objective, result.direction) == ("val_map50", "max")
    client = MlflowClient(cfg.tracking.uri)
    exp = client.get_run(result.parent_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert len(runs) == len(result.trials) == 2
    by_trial = {r["trial_id"]: r for r in result.trials}
    for run in runs:
        assert run.info.status == "FINISHED"
        trial = by_trial[run.data.tags["kerasflow.trial_id"]]
        history = client.get_metric_history(run.info.run_id, "val_map50")
        assert [m.step for m in history] == [1, 2]  # logged every epoch
        best = max(m.value for m in history)
        assert 0.0 <= best <= 1.0
        # The trial's objective is its best epoch's val_map50 (one execution).
        assert trial["objective"] == pytest.approx(best)
        assert run.data.metrics["objective"] == pytest.approx(best)
    best_trial = max(result.trials, key=lambda t: t["objective"])
    assert result.best_objective == pytest.approx(best_trial["objective"])
    assert 0.0 <= result.test_metrics["test_map50"] <= 1.0
