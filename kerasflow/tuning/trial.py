"""A trial: one tracked fit of the run config with a trial's values (Keras Tuner's ``Tuner``).

Each trial is a nested MLflow run of the search's parent run: its values as
params, per-epoch metrics, the final ``objective``, FINISHED or FAILED with the
error. Its best-epoch weights stay in the trial's folder (and in its MLflow run
when workers on other hosts run trials) for the search to evaluate the best.
"""

from __future__ import annotations

import logging
import math
import shutil
import traceback
import warnings
from pathlib import Path

import keras
import keras_tuner
import numpy as np

from kerasflow import tasks
from kerasflow.config import RunConfig
from kerasflow.errors import ConfigError, KerasflowError, TrackingError
from kerasflow.tracking import MlflowCallback, RunTracker, start_tracker
from kerasflow.tracking import runs as mlflow_runs
from kerasflow.training import ema, fit, robustness
from kerasflow.training.compile import build_compiled_model
from kerasflow.tuning.distributed import ChiefWorkerTuner, Role
from kerasflow.tuning.hypermodel import ConfigHyperModel
from kerasflow.tuning.oracles import resolve_objective
from kerasflow.tuning.search_space import ParamSpec, active_values

log = logging.getLogger(__name__)

WEIGHTS = "best.weights.h5"


class _ObjectiveMissing(ConfigError):
    """The objective is not among the trial's logged metrics: every trial would fail alike."""


class _RequireMetric(keras.callbacks.Callback):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.name not in logs:
            raise _ObjectiveMissing(
                f"tune.objective.name {self.name!r} is not a metric of the trials' fits. "
                f"Logged metrics: {', '.join(sorted(logs))}. Choose one of those "
                "(val_* needs a validation split)."
            )


class _PrefixedMetrics(keras.callbacks.Callback):
    """Per-epoch metrics of a repeated execution, logged as ``execution_<i>/<name>``."""

    def __init__(self, tracker: RunTracker, prefix: str):
        super().__init__()
        self.tracker = tracker
        self.prefix = prefix

    def on_epoch_end(self, epoch, logs=None):
        metrics = {
            f"{self.prefix}{k}": float(v)
            for k, v in (logs or {}).items()
            if isinstance(v, int | float | np.floating)
        }
        self.tracker.log_metrics(metrics, step=epoch + 1)


def load_weights(model: keras.Model, path: Path) -> None:
    """Load a trial's checkpoint into ``model`` (a fresh model of the trial's config)."""
    with warnings.catch_warnings():
        # The checkpoint also holds the trial's optimizer state, which a fresh model skips.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(str(path))


class SearchContext:
    """Everything a trial needs to know about its search."""

    def __init__(
        self,
        cfg: RunConfig,
        specs: list[ParamSpec],
        role: Role,
        project_dir: Path,
        fingerprint: str,
    ):
        self.cfg = cfg
        self.specs = specs
        self.role = role
        self.project_dir = project_dir
        self.fingerprint = fingerprint
        self.objective, self.direction = resolve_objective(cfg)
        self.experiment = cfg.tracking_experiment
        self.uri = cfg.tracking.uri
        self.enabled = cfg.tracking.enabled
        self.key = f"{cfg.experiment.name}/{cfg.tune.search_name}"
        self.parent_run_id: str | None = None

    def trial_dir(self, trial_id: str) -> Path:
        path = self.project_dir / f"trial_{trial_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def finished_runs(self, trial_id: str) -> list[mlflow_runs.RunSummary]:
        """The trial's FINISHED child runs of this search (oldest first)."""
        return mlflow_runs.find_runs(
            self.experiment,
            {mlflow_runs.PARENT_TAG: self.parent_run_id, "kerasflow.trial_id": trial_id},
            self.uri,
            statuses=("FINISHED",),
        )

    def trial_weights(self, trial_id: str) -> Path:
        """The trial's best-epoch weights; fetched from its MLflow run if another host ran it."""
        path = self.trial_dir(trial_id) / WEIGHTS
        if path.is_file() or not self.enabled:
            return path
        runs = self.finished_runs(trial_id)
        if not runs:
            raise TrackingError(
                f"No weights for trial {trial_id}: {path} is missing and no finished MLflow "
                "run of that trial holds them. Run the search again with --overwrite."
            )
        got = mlflow_runs.download_artifact(runs[-1].run_id, WEIGHTS, str(path.parent), self.uri)
        return Path(got)


class KerasflowTuner(ChiefWorkerTuner):
    """The loop that runs a search (Keras Tuner's ``Tuner``): one tracked fit per trial."""

    def __init__(self, oracle, hypermodel: ConfigHyperModel, search: SearchContext, **kwargs):
        self.search_ctx = search
        super().__init__(oracle, hypermodel, search.role, **kwargs)

    def search(self, *args, **kwargs):
        """Run trials until the oracle stops; Keras Tuner's errors become kerasflow's."""
        try:
            # Not redirected: Keras' own fit progress goes to stdout as in train(); the oracle's
            # display is off (verbose 0) and no trial is retried, so Keras Tuner prints nothing.
            super().search(*args, **kwargs)
        except keras_tuner.errors.FatalError as exc:
            cause = exc.__cause__
            if isinstance(cause, KerasflowError):
                raise cause from None
            raise
        except RuntimeError as exc:
            if "consecutive failures" not in str(exc):
                raise
            raise ConfigError(
                f"{self.search_ctx.cfg.tune.max_consecutive_failures} trials in a row failed "
                "(tune.max_consecutive_failures), so the search stopped. Each failed trial's "
                "MLflow run holds its error (tag kerasflow.error, error.txt); fix the space or "
                f"the config. Last error:\n{str(exc).splitlines()[-1] if str(exc) else exc}"
            ) from None

    def run_trial(self, trial, *args, **kwargs):
        s = self.search_ctx
        done = self._finished_before(trial.trial_id)
        if done is not None:
            return {s.objective: done}
        values = dict(trial.hyperparameters.values)
        searched = active_values(s.specs, values)
        tuner_values = {k: v for k, v in values.items() if k.startswith("tuner/")}
        tracker = start_tracker(
            s.experiment,
            s.uri,
            run_name=f"trial_{trial.trial_id}",
            tags={
                **s.cfg.experiment.tags,
                "kerasflow.role": "trial",
                "kerasflow.search": s.key,
                "kerasflow.trial_id": trial.trial_id,
                "kerasflow.tuner_id": self.tuner_id,
                **({mlflow_runs.PARENT_TAG: s.parent_run_id} if s.parent_run_id else {}),
            },
            nested=not self.is_worker,
            enabled=s.enabled,
        )
        try:
            tracker.log_params({**searched, **tuner_values})
            epochs = values.get("tuner/epochs")
            cfg = self.hypermodel.trial_config(values, epochs)
            score = self._fit_trial(trial, cfg, tracker, values)
        except KeyboardInterrupt:
            tracker.end("KILLED")
            raise
        except BaseException as exc:
            text = "".join(traceback.format_exception(exc))
            tracker.set_tags({"kerasflow.error": f"{type(exc).__name__}: {exc}"[:4000]})
            tracker.log_text(text, "error.txt")
            tracker.end("FAILED")
            log.warning("trial %s failed: %s: %s", trial.trial_id, type(exc).__name__, exc)
            if isinstance(exc, _ObjectiveMissing):
                raise keras_tuner.errors.FatalError(str(exc)) from exc
            raise
        tracker.end("FINISHED")
        return {s.objective: score}

    def _finished_before(self, trial_id: str) -> float | None:
        """The objective of a trial that finished before a kill the oracle's state missed.

        A kill after a trial's run FINISHED but before Keras Tuner saved the trial as ended
        makes the oracle run it again; its finished run and weights are used instead, so
        every trial has exactly one FINISHED run.
        """
        s = self.search_ctx
        if not (s.enabled and s.parent_run_id and (s.trial_dir(trial_id) / WEIGHTS).is_file()):
            return None
        scores = [
            r.metrics["objective"] for r in s.finished_runs(trial_id) if "objective" in r.metrics
        ]
        if not scores:
            return None
        log.info("trial %s finished before the search was interrupted; not run again", trial_id)
        return float(scores[-1])

    def _fit_trial(self, trial, cfg: RunConfig, tracker: RunTracker, values: dict) -> float:
        s = self.search_ctx
        prepared = self.hypermodel.data(cfg)
        task = tasks.get(cfg.experiment.task)
        tracker.log_params(cfg.to_dict())
        tracker.set_tags({"kerasflow.model": cfg.model.name, "kerasflow.task": task.name})
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        previous = values.get("tuner/trial_id")
        trial_dir = s.trial_dir(trial.trial_id)
        bests: list[tuple[float, Path]] = []
        for execution in range(s.cfg.tune.executions_per_trial):
            keras.utils.set_random_seed(cfg.experiment.seed + execution)
            model = build_compiled_model(cfg, prepared)
            if previous:
                load_weights(model, s.trial_weights(str(previous)))
            # The datasets are made after the model and fed to fit as train() does, so that a
            # trial of a config reproduces `kerasflow train` of it (the datasets' random ops
            # take seeds from the global one, and the order of examples depends on how the
            # dataset is iterated).
            data = task.training_data(prepared, model)
            split = fit.evaluation_split(data)
            path = trial_dir / f"execution_{execution}.weights.h5"
            path.unlink(missing_ok=True)
            checkpoint = keras.callbacks.ModelCheckpoint(
                str(path),
                monitor=s.objective,
                mode=s.direction,
                save_best_only=True,
                save_weights_only=True,
            )
            metrics_cb = (
                MlflowCallback(tracker)
                if execution == 0
                else _PrefixedMetrics(tracker, f"execution_{execution}/")
            )
            callbacks = [
                keras.callbacks.TerminateOnNaN(),
                # As in train(): validation and the checkpoint see the EMA weights.
                *ema.swap_callbacks(cfg.compile),
                # First, as in train(): e.g. val_map50 must be in the logs before the
                # objective is checked, logged, checkpointed and recorded by History.
                *task.epoch_callbacks(data, split),
                *robustness.epoch_callbacks(cfg, data, split),  # e.g. val_pgd_eps4_accuracy
                _RequireMetric(s.objective),
                metrics_cb if tracker.enabled else keras.callbacks.Callback(),
                checkpoint,
                *fit.early_stopping(cfg, split == "validation"),
            ]
            history = fit.fit_model(model, cfg, data, callbacks, initial_epoch=initial_epoch)
            seen = [float(v) for v in history.history.get(s.objective, [])]
            finite = [v for v in seen if math.isfinite(v)]
            if not finite or not path.is_file():
                raise FloatingPointError(
                    f"trial {trial.trial_id}: {s.objective} was never finite "
                    f"(values: {seen}); the trial diverged."
                )
            best = max(finite) if s.direction == "max" else min(finite)
            bests.append((best, path))
        score = float(np.mean([b for b, _ in bests]))
        pick = (max if s.direction == "max" else min)(bests, key=lambda item: item[0])
        weights = trial_dir / WEIGHTS
        shutil.copyfile(pick[1], weights)
        tracker.log_metrics({"objective": score, f"best_{s.objective}": score})
        tracker.set_tags({"kerasflow.objective": s.objective})
        if s.role.distributed:
            # Workers may run on other hosts: the chief fetches the winner's weights from MLflow.
            tracker.log_artifact(weights)
        return score
