"""Searches on a tiny problem: nested runs, failed trials, one registration, each tuner."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from kerasflow.config import build_config
from kerasflow.errors import ConfigError
from kerasflow.tracking import model_registry as registry
from kerasflow.tuning import tune
from tests.tuning.helpers import tiny_config

GRID_SPACE = {
    "model.params.width": {"choice": [4, 8]},
    # depth 0 is a valid config but no valid model: those trials fail and the search goes on.
    "model.params.depth": {"choice": [1, 0]},
}


def _children(client, parent):
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")


@pytest.fixture(scope="module")
def grid(tune_root, tune_uri):
    data = tiny_config(
        tune_root,
        tune_uri,
        "grid",
        tune={
            "tuner": "grid",
            "max_trials": 4,
            "max_consecutive_failures": 3,
            "objective": "val_accuracy",
            "space": GRID_SPACE,
        },
    )
    cfg = build_config(data)
    return cfg, tune(cfg)


def test_grid_runs_every_combination_with_failures_marked(grid, tune_uri):
    cfg, result = grid
    assert result.num_trials == 4
    statuses = {
        (r["model.params.width"], r["model.params.depth"]): r["status"] for r in result.trials
    }
    assert statuses == {
        (4, 1): "COMPLETED",
        (8, 1): "COMPLETED",
        (4, 0): "FAILED",
        (8, 0): "FAILED",
    }
    assert result.best_hyperparameters["model.params.depth"] == 1
    assert result.project_dir.name == "grid"
    assert (result.project_dir / "oracle.json").is_file()

    client = MlflowClient(tune_uri)
    children = _children(client, result.parent_run_id)
    assert len(children) == 4
    by_status = {}
    for run in children:
        by_status.setdefault(run.info.status, []).append(run)
        # Params are named by their config paths in every trial, so the compare view lines up.
        assert run.data.params["model.params.width"] in ("4", "8")
        assert run.data.params["model.params.depth"] in ("0", "1")
        assert run.data.tags["kerasflow.search"] == "grid/grid"
    assert len(by_status["FINISHED"]) == 2 and len(by_status["FAILED"]) == 2
    for run in by_status["FAILED"]:
        assert "depth" in run.data.tags["kerasflow.error"]
    for run in by_status["FINISHED"]:
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
        best = max(m.value for m in history)
        assert run.data.metrics["objective"] == pytest.approx(best)
        assert run.data.params["train.epochs"] == "2"


def test_parent_run_holds_settings_table_plots_and_test_metrics(grid, tune_uri, tmp_path):
    cfg, result = grid
    client = MlflowClient(tune_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    params = parent.data.params
    assert params["tune.tuner"] == "grid"
    assert params["tune.objective"] == "val_accuracy"
    assert params["tune.direction"] == "max"
    assert params["tune.space.model.params.width.choice"] == "[4, 8]"
    assert params["best.model.params.depth"] == "1"
    assert parent.data.metrics["best_objective"] == pytest.approx(result.best_objective)
    assert parent.data.metrics["trials_failed"] == 2
    assert 0.0 <= parent.data.metrics["test_accuracy"] <= 1.0
    names = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"trials.csv", "plots", "config.yaml", "search_space.json"} <= names
    assert result.model_uri.startswith("models:/")
    plots = {a.path for a in client.list_artifacts(result.parent_run_id, "plots")}
    assert plots == {
        "plots/objective_per_trial.png",
        "plots/objective_vs_model.params.width.png",
        "plots/objective_vs_model.params.depth.png",
    }
    local = client.download_artifacts(result.parent_run_id, "trials.csv", str(tmp_path))
    with open(local) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["trial_id"] for r in rows] == ["0", "1", "2", "3"]
    assert {r["status"] for r in rows} == {"COMPLETED", "FAILED"}
    assert set(rows[0]) >= {"objective", "run_id", "model.params.width", "model.params.depth"}


def test_one_version_registered_with_best_epoch_weights(grid, tune_uri):
    cfg, result = grid
    client = MlflowClient(tune_uri)
    versions = client.search_model_versions("name = 'grid-model'")
    assert len(versions) == 1
    assert versions[0].run_id == result.parent_run_id
    assert result.registered.version == "1"
    # The champion alias also needs a test score above chance (tasks' beats_chance): this
    # tiny grid may not get there, and then the version says why instead.
    reason = result.registered.not_champion_reason
    assert result.registered.champion == (reason is None)
    if reason is None:
        assert str(client.get_model_version_by_alias("grid-model", "champion").version) == "1"
    else:
        assert "chance" in reason
        assert client.get_model_version("grid-model", "1").tags["kerasflow.not_champion"]

    # The registered weights are the best trial's best epoch: on the validation split they
    # score exactly the objective that its checkpoint recorded.
    from kerasflow import pipelines

    model = registry.load_model("models:/grid-model/1", uri=tune_uri)
    prepared = pipelines.prepare(result.config.data, result.config.experiment.seed)
    x, y = zip(*prepared.dataset("validation", training=False).as_numpy_iterator(), strict=True)
    accuracy = float(
        (model.predict(np.concatenate(x), verbose=0).argmax(1) == np.concatenate(y)).mean()
    )
    assert accuracy == pytest.approx(result.best_objective, abs=1e-6)


def test_rerunning_a_finished_search_changes_nothing(grid, tune_uri):
    cfg, first = grid
    again = tune(cfg)
    assert again.parent_run_id == first.parent_run_id
    assert again.num_trials == 4
    assert again.registered.version == "1"
    client = MlflowClient(tune_uri)
    assert len(_children(client, first.parent_run_id)) == 4
    assert len(client.search_model_versions("name = 'grid-model'")) == 1


def test_changed_space_with_same_name_is_refused(grid):
    cfg, _ = grid
    data = cfg.to_dict()
    data["tune"]["space"] = {"model.params.width": {"choice": [4, 16]}}
    with pytest.raises(ConfigError) as err:
        tune(build_config(data))
    assert "space" in str(err.value) and "--overwrite" in str(err.value)


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_each_tuner_runs_a_tiny_search(tuner, tune_root, tune_uri):
    data = tiny_config(
        tune_root,
        tune_uri,
        f"t_{tuner}",
        tune={
            "tuner": tuner,
            "max_trials": 2,
            "epochs": 1,
            "objective": {"name": "val_loss", "direction": "min"},
            "hyperband": {"max_epochs": 2, "factor": 2},
            "bayesian": {"num_initial_points": 1},
            "space": {
                "model.params.width": {"choice": [2, 4]},
                "compile.optimizer.learning_rate": {"float": [1e-3, 1e-2], "sampling": "log"},
                # Conditional: only searched while width is 4.
                "model.params.dense_units": {"choice": [8, 32], "when": {"model.params.width": 4}},
            },
        },
        tracking={"log_model": False},
    )
    result = tune(build_config(data))
    for row in result.trials:
        if row["model.params.width"] == 4:
            assert row["model.params.dense_units"] in (8, 32)
        else:
            assert "model.params.dense_units" not in row
    completed = [r for r in result.trials if r["status"] == "COMPLETED"]
    if tuner == "hyperband":
        # Hyperband's budget decides the count; its trials carry their epoch budget.
        assert len(result.trials) >= 2
        assert {r["tuner/epochs"] for r in result.trials} <= {1, 2}
    else:
        assert len(result.trials) == 2
    assert len(completed) == len(result.trials)
    assert result.direction == "min"
    assert result.best_objective == min(r["objective"] for r in completed)
    assert "test_accuracy" in result.test_metrics and result.registered is None
    client = MlflowClient(tune_uri)
    children = _children(client, result.parent_run_id)
    assert len(children) == len(result.trials)
    assert {r.info.status for r in children} == {"FINISHED"}


def test_consecutive_failures_stop_the_search(tune_root, tune_uri):
    data = tiny_config(
        tune_root,
        tune_uri,
        "failing",
        tune={
            "tuner": "grid",
            "max_trials": 4,
            "max_consecutive_failures": 2,
            "space": {"model.params.depth": {"choice": [0, -1, -2]}},
        },
    )
    with pytest.raises(ConfigError, match="2 trials in a row failed"):
        tune(build_config(data))
    client = MlflowClient(tune_uri)
    exp = client.get_experiment_by_name("failing")
    runs = client.search_runs([exp.experiment_id])
    statuses = sorted(r.info.status for r in runs)
    assert statuses == ["FAILED", "FAILED", "FAILED"]  # the parent and two trials


def test_unknown_objective_stops_at_once(tune_root, tune_uri):
    data = tiny_config(
        tune_root,
        tune_uri,
        "badobjective",
        tune={
            "max_trials": 3,
            "objective": "val_top9_accuracy",
            "space": {"model.params.width": {"choice": [2, 4]}},
        },
    )
    with pytest.raises(ConfigError, match="val_top9_accuracy.*Logged metrics: .*val_accuracy"):
        tune(build_config(data))


def test_a_bad_task_choice_stops_before_any_trial(tune_root, tune_uri):
    data = tiny_config(
        tune_root,
        tune_uri,
        "badmonitor",
        tune={"max_trials": 2, "space": {"model.params.width": {"choice": [2, 4]}}},
    )
    data["train"] = {**data.get("train", {}), "checkpoint": {"monitor": "val_mean_iou"}}
    with pytest.raises(ConfigError, match="val_mean_iou.*classification.*val_accuracy"):
        tune(build_config(data))
    assert not (tune_root / "tuning" / "badmonitor").exists()  # no search state was written


def test_no_tune_section_is_a_clear_error(tune_root, tune_uri):
    data = tiny_config(tune_root, tune_uri, "none")
    data.pop("tune")
    with pytest.raises(ConfigError, match="no tune: section"):
        tune(build_config(data))


def test_overwrite_discards_the_saved_search(tune_root, tune_uri):
    tune_cfg = {"max_trials": 1, "epochs": 1, "space": {"model.params.width": {"choice": [2]}}}
    data = tiny_config(tune_root, tune_uri, "ow", tune=tune_cfg, tracking={"log_model": False})
    first = tune(build_config(data))
    data["tune"]["tuner"] = "bayesian"
    data["tune"]["name"] = "random"  # the same search name as before, with another tuner
    with pytest.raises(ConfigError, match="different tuner"):
        tune(build_config(data))
    second = tune(build_config(data), overwrite=True)
    assert second.parent_run_id != first.parent_run_id
    assert second.num_trials == 1
    assert (
        MlflowClient(tune_uri).get_run(second.parent_run_id).data.params["tune.tuner"] == "bayesian"
    )


def test_a_trial_reproduces_kerasflow_train_of_its_config(tune_root, tune_uri):
    # A trial builds, seeds and feeds fit as train() does: same config and seed, same epochs.
    import kerasflow

    data = tiny_config(
        tune_root,
        tune_uri,
        "same",
        tune={
            "tuner": "grid",
            "max_trials": 1,
            "objective": "val_loss",
            "space": {"model.params.width": {"choice": [4]}},
        },
        train={"steps_per_epoch": None, "epochs": 2},
    )
    cfg = build_config(data)
    result = tune(cfg)
    client = MlflowClient(tune_uri)
    (trial_run,) = _children(client, result.parent_run_id)
    trial = client.get_metric_history(trial_run.info.run_id, "val_loss")
    del data["tune"]
    data["tracking"]["log_model"] = False
    trained = kerasflow.train(build_config(data))
    assert [m.value for m in sorted(trial, key=lambda m: m.step)] == pytest.approx(
        [trained.history["val_loss"][e] for e in (1, 2)], rel=1e-5
    )
