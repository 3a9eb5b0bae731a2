"""How to search: the Keras Tuner oracle that ``tune.tuner`` names."""

from __future__ import annotations

import keras_tuner

from kerasflow import tasks
from kerasflow.config import RunConfig
from kerasflow.errors import ConfigError
from kerasflow.tasks.base import metric_mode
from kerasflow.tuning.search_space import ParamSpec


def resolve_objective(cfg: RunConfig) -> tuple[str, str]:
    """``tune.objective`` as ``(metric of the trials' epoch logs, direction)``.

    ``auto`` is the task's monitor (``val_accuracy``, ``val_micro_f1``,
    ``val_mean_iou``, ``val_map``); an ``auto`` direction follows the name.
    """
    objective = cfg.tune.objective
    name = tasks.get(cfg.experiment.task).monitor if objective.name == "auto" else objective.name
    return name, metric_mode(name, objective.direction)


def make_oracle(cfg: RunConfig, specs: list[ParamSpec]) -> keras_tuner.Oracle:
    """The Keras Tuner oracle (how to search) named by ``tune.tuner``."""
    t = cfg.tune
    common = dict(
        objective=keras_tuner.Objective(*resolve_objective(cfg)),
        seed=t.seed if t.seed is not None else cfg.experiment.seed,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=t.max_consecutive_failures,
    )
    if t.tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=t.max_trials, **common)
    if t.tuner == "grid":
        for spec in specs:
            if spec.kind == "float" and spec.step is None:
                raise ConfigError(
                    f"tune.space[{spec.path!r}]: the grid tuner needs a step for float ranges. "
                    f"Add step: ..., or use choice. Received: {spec.to_dict()!r}"
                )
        return keras_tuner.oracles.GridSearchOracle(max_trials=t.max_trials, **common)
    if t.tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=t.max_trials,
            num_initial_points=t.bayesian.num_initial_points,
            alpha=t.bayesian.alpha,
            beta=t.bayesian.beta,
            **common,
        )
    return keras_tuner.oracles.HyperbandOracle(
        max_epochs=t.hyperband.max_epochs,
        factor=t.hyperband.factor,
        hyperband_iterations=t.hyperband.iterations,
        **common,
    )
