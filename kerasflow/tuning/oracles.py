"""How to search: the Keras Tuner oracle that ``tune.tuner`` names."""

from __future__ import annotations

import functools

import keras_tuner
from keras_tuner.src.tuners.gridsearch import LinkedList

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


_ENDED = ("COMPLETED", "FAILED")


class _ResumesCompletely:
    """A search reloaded after a kill never runs an ended trial again.

    Keras Tuner saves a trial's file (status COMPLETED) before the oracle's
    state, and the oracle's state before it drops the trial from its ongoing
    ones: a kill in between leaves an ended trial listed as ongoing, and
    ``Oracle.reload`` queues every ongoing trial for a retry. Reloading here
    keeps only the trials that did not end in the retry queue and records the
    ended ones in the end order.
    """

    def reload(self):
        super().reload()
        ended = [t for t in self.start_order if str(self.trials[t].status) in _ENDED]
        self._retry_queue = [t for t in self._retry_queue if t not in ended]
        self.end_order += [t for t in ended if t not in self.end_order]


class RandomSearchOracle(_ResumesCompletely, keras_tuner.oracles.RandomSearchOracle):
    """Keras Tuner's random search, resumable after a kill at any point."""


class BayesianOptimizationOracle(
    _ResumesCompletely, keras_tuner.oracles.BayesianOptimizationOracle
):
    """Keras Tuner's Bayesian optimisation, resumable after a kill at any point."""


class HyperbandOracle(_ResumesCompletely, keras_tuner.oracles.HyperbandOracle):
    """Keras Tuner's Hyperband, resumable after a kill at any point."""


class GridSearchOracle(_ResumesCompletely, keras_tuner.oracles.GridSearchOracle):
    """Keras Tuner's grid search, resumable after a kill at any point.

    Keras Tuner's grid oracle keeps the grid order of its trials and the
    trials whose successor is still to be generated in memory only, so a
    reloaded search fails with ``KeyError: '<trial id>'`` and loses grid
    points (keras-tuner issue 1055). Both are rebuilt from the saved trials:
    the started trials sorted in grid order, and every ended trial queued (the
    oracle skips a trial whose successor exists already).
    """

    def reload(self):
        super().reload()
        started = [t for t in self.start_order if t in self.trials]

        def order(a: str, b: str) -> int:
            return self._compare(
                self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values
            )

        self._ordered_ids = LinkedList()
        for trial_id in sorted(started, key=functools.cmp_to_key(order)):
            self._ordered_ids.insert(trial_id)
        self._populate_next = [t for t in self.end_order if t in self.trials]


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
        return RandomSearchOracle(max_trials=t.max_trials, **common)
    if t.tuner == "grid":
        for spec in specs:
            if spec.kind == "float" and spec.step is None:
                raise ConfigError(
                    f"tune.space[{spec.path!r}]: the grid tuner needs a step for float ranges. "
                    f"Add step: ..., or use choice. Received: {spec.to_dict()!r}"
                )
        return GridSearchOracle(max_trials=t.max_trials, **common)
    if t.tuner == "bayesian":
        return BayesianOptimizationOracle(
            max_trials=t.max_trials,
            num_initial_points=t.bayesian.num_initial_points,
            alpha=t.bayesian.alpha,
            beta=t.bayesian.beta,
            **common,
        )
    return HyperbandOracle(
        max_epochs=t.hyperband.max_epochs,
        factor=t.hyperband.factor,
        hyperband_iterations=t.hyperband.iterations,
        **common,
    )
