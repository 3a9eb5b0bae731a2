"""The oracle that tune.tuner names, with the run config's settings (no training)."""

from __future__ import annotations

import keras_tuner
import pytest

from kerasflow.config import build_config
from kerasflow.errors import ConfigError
from kerasflow.tuning.oracles import make_oracle
from kerasflow.tuning.search_space import parse_space
from tests.tuning.helpers import tiny_config

SPACE = {"model.params.width": {"choice": [2, 4]}}


def _config(tmp_path, **tune):
    data = tiny_config(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", tune={"space": SPACE, **tune}
    )
    return build_config(data)


@pytest.mark.parametrize(
    ("tuner", "oracle_class"),
    [
        ("random", keras_tuner.oracles.RandomSearchOracle),
        ("grid", keras_tuner.oracles.GridSearchOracle),
        ("bayesian", keras_tuner.oracles.BayesianOptimizationOracle),
        ("hyperband", keras_tuner.oracles.HyperbandOracle),
    ],
)
def test_each_tuner_names_its_oracle(tmp_path, tuner, oracle_class):
    cfg = _config(tmp_path, tuner=tuner, max_trials=3, objective="val_loss")
    oracle = make_oracle(cfg, parse_space(cfg.tune.space))
    # Keras Tuner's oracle, with kerasflow's complete resume (kerasflow.tuning.oracles).
    assert isinstance(oracle, oracle_class) and type(oracle).__name__ == oracle_class.__name__
    assert oracle.objective.name == "val_loss" and oracle.objective.direction == "min"
    assert oracle.seed == cfg.experiment.seed  # tune.seed defaults to experiment.seed
    assert oracle.max_retries_per_trial == 0
    assert oracle.max_consecutive_failed_trials == cfg.tune.max_consecutive_failures
    if tuner != "hyperband":
        assert oracle.max_trials == 3


def test_hyperband_and_bayesian_settings_are_passed(tmp_path):
    cfg = _config(tmp_path, tuner="hyperband", seed=7, hyperband={"max_epochs": 4, "factor": 2})
    oracle = make_oracle(cfg, parse_space(cfg.tune.space))
    assert (oracle.max_epochs, oracle.factor, oracle.seed) == (4, 2, 7)
    cfg = _config(tmp_path, tuner="bayesian", bayesian={"num_initial_points": 1})
    assert make_oracle(cfg, parse_space(cfg.tune.space)).num_initial_points == 1


def test_grid_needs_a_step_for_float_ranges(tmp_path):
    cfg = _config(tmp_path, tuner="grid")
    specs = parse_space({"compile.optimizer.learning_rate": {"float": [1e-3, 1e-2]}})
    with pytest.raises(ConfigError, match=r"learning_rate.*the grid tuner needs a step"):
        make_oracle(cfg, specs)


def _grid_oracle(tmp_path):
    from kerasflow.tuning.oracles import GridSearchOracle

    oracle = GridSearchOracle(objective=keras_tuner.Objective("score", "max"), max_trials=4)
    oracle._set_project_dir(str(tmp_path), "grid")
    return oracle


def _run(oracle, trial, score=0.5):
    oracle.update_trial(trial.trial_id, {"score": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_a_reloaded_grid_oracle_keeps_its_order_and_never_reruns_an_ended_trial(tmp_path):
    """The states a kill leaves (keras-tuner issue 1055), rebuilt without training anything."""
    hps = keras_tuner.HyperParameters()
    hps.Choice("width", [2, 3, 4, 5])
    first = _grid_oracle(tmp_path)
    first.update_space(hps)
    _run(first, first.create_trial("t"))
    running = first.create_trial("t")
    assert running.hyperparameters.values == {"width": 3}
    # Killed in trial 1: Keras Tuner's own grid oracle raised KeyError: '1' here and lost points.
    second = _grid_oracle(tmp_path)
    second.reload()
    retried = second.create_trial("t")
    assert (retried.trial_id, retried.hyperparameters.values) == ("1", {"width": 3})
    saved = (tmp_path / "grid" / "oracle.json").read_text()
    _run(second, retried)
    # Killed after trial 1's file said COMPLETED but before the oracle's state did.
    (tmp_path / "grid" / "oracle.json").write_text(saved)
    third = _grid_oracle(tmp_path)
    third.reload()
    assert third._retry_queue == [] and third.end_order == ["0", "1"]
    widths = []
    while (trial := third.create_trial("t")).status == "RUNNING":
        widths.append((trial.trial_id, trial.hyperparameters.values["width"]))
        _run(third, trial)
    assert widths == [("2", 4), ("3", 5)]
    assert sorted(third.trials) == ["0", "1", "2", "3"]
