"""A search: the ``tune:`` section of a run config, run with Keras Tuner and tracked in MLflow.

One search is one parent MLflow run (tuner settings, space, objective, the
best values, ``trials.csv`` and plots, the test evaluation and the model) and
one nested child run per trial (:mod:`~kerasflow.tuning.trial`). The best
trial's best-epoch weights are evaluated on the test split, logged as the
parent's model and registered once; the ``champion`` alias moves only if they
win.

State lives under ``tune.directory/<experiment.name>/<tune.name>/``: Keras
Tuner's oracle and trial files plus ``kerasflow_search.json`` (the parent
run and what the search was started with). Re-running the same config after a
kill resumes: finished trials are kept, the interrupted one runs again, its
orphaned child run is marked KILLED and the parent run continues.

Distributed searches (one chief, many workers) are in
:mod:`~kerasflow.tuning.distributed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from kerasflow import tasks
from kerasflow.config import RunConfig, as_config
from kerasflow.errors import ConfigError
from kerasflow.tracking import RunTracker, model_registry, start_tracker
from kerasflow.tracking import runs as mlflow_runs
from kerasflow.tracking.system_metrics import start_system_metrics, stop_system_metrics
from kerasflow.training import fit
from kerasflow.training.compile import build_compiled_model
from kerasflow.tuning import report as search_report
from kerasflow.tuning.distributed import keras_tuner_env, resolve_role, run_worker, wait_for_parent
from kerasflow.tuning.hypermodel import ConfigHyperModel
from kerasflow.tuning.oracles import make_oracle
from kerasflow.tuning.search_space import (
    ParamSpec,
    active_values,
    parse_space,
    space_fingerprint,
    validate_space,
)
from kerasflow.tuning.trial import KerasflowTuner, SearchContext, load_weights

log = logging.getLogger(__name__)

STATE_FILE = "kerasflow_search.json"


# ------------------------------------------------------------------ results
@dataclass
class TuneResult:
    """What :func:`tune` returns (a worker's result lists only its own trials)."""

    best_hyperparameters: dict[str, Any]
    best_trial_id: str | None
    best_objective: float | None
    objective: str
    direction: str
    trials: list[dict[str, Any]]
    test_metrics: dict[str, float]
    parent_run_id: str | None
    model_uri: str | None
    registered: model_registry.RegisteredVersion | None
    project_dir: Path
    config: RunConfig | None = None
    role: str = "single"
    artifacts: list[str] = field(default_factory=list)

    @property
    def num_trials(self) -> int:
        return len(self.trials)

    @property
    def registered_version(self) -> str | None:
        return self.registered.version if self.registered else None


class _LogStream(io.TextIOBase):
    """Keras Tuner prints; its lines go to the log instead (the library never prints)."""

    def write(self, text):
        for line in str(text).splitlines():
            if line.strip():
                log.info("keras_tuner: %s", line.strip())
        return len(text)


# ------------------------------------------------------------------- state
class SearchState:
    """``kerasflow_search.json``: the parent run and what the search was started with."""

    def __init__(self, project_dir: Path):
        self.path = project_dir / STATE_FILE
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())

    def update(self, **values) -> None:
        self.data.update(values)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)  # atomic: a kill never leaves half a file


def search_identity(cfg: RunConfig, specs: list[ParamSpec]) -> dict[str, str]:
    """What decides a search's trials; a saved search resumes only if all of it is unchanged.

    ``max_trials`` and ``max_consecutive_failures`` may change between runs
    (to extend a search).
    """
    t = cfg.tune
    tuner = {"tuner": t.tuner, "executions_per_trial": t.executions_per_trial, "seed": t.seed}
    if t.tuner == "hyperband":
        tuner["hyperband"] = t.hyperband.model_dump(mode="json")
    elif t.tuner == "bayesian":
        tuner["bayesian"] = t.bayesian.model_dump(mode="json")
    else:
        tuner["epochs"] = t.epochs
    return {
        "tuner": json.dumps(tuner, sort_keys=True),
        "space": space_fingerprint(specs),
        "objective": json.dumps(t.objective.model_dump(mode="json"), sort_keys=True),
        "run config": cfg.fingerprint(),
    }


def _fingerprint(identity: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


# ------------------------------------------------------------------ search
def project_dir_for(cfg: RunConfig) -> Path:
    """``tune.directory/<experiment.name>/<search name>`` (absolute)."""
    return Path(cfg.tune.directory).resolve() / cfg.experiment.name / cfg.tune.search_name


def tune(
    config: RunConfig | str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    *,
    overwrite: bool = False,
    chief: bool = False,
    port: int | None = None,
    host: str = "127.0.0.1",
    worker: str | None = None,
    chief_address: str | None = None,
) -> TuneResult:
    """Run the ``tune:`` section of a run config: search, then evaluate and register the best.

    Args:
        config: a :class:`RunConfig`, a YAML path, or None for the packaged default.
        overrides: ``["tune.max_trials=5", ...]`` applied on top.
        overwrite: discard a saved search of the same name and start again.
        chief: serve the oracle on ``host:port`` for workers (distributed tuning).
        worker: run trials for the chief at ``chief_address`` (``HOST:PORT``) as this ID.

    Raises:
        ConfigError: no ``tune`` section, a bad space path or value (named), a
            saved search with another space or tuner, or too many failed trials.

    Example:
        >>> import kerasflow
        >>> result = kerasflow.tune("kerasflow/configs/digits_tune.yaml")
        >>> result.best_hyperparameters, result.test_metrics["test_accuracy"]
    """
    cfg = as_config(config, overrides)
    if cfg.tune is None:
        raise ConfigError(
            "The run config has no tune: section. Add one with a space, e.g.\n"
            "tune:\n  tuner: random\n  max_trials: 5\n  space:\n"
            "    model.params.width: {choice: [16, 32, 64]}"
        )
    role = resolve_role(chief, port, host, worker, chief_address)
    tasks.get(cfg.experiment.task).check_config(cfg)  # loss, metrics, monitors: before any trial
    specs = parse_space(cfg.tune.space)
    validate_space(cfg.to_dict(), specs)
    project = project_dir_for(cfg)
    identity = search_identity(cfg, specs)
    search = SearchContext(cfg, specs, role, project, _fingerprint(identity))
    with keras_tuner_env(role):
        if role.kind == "worker":
            return _run_as_worker(search)
        return _run_search(search, identity, overwrite)


def _check_identity(state: SearchState, identity: dict[str, str], project: Path) -> None:
    saved = state.data.get("identity")
    if not saved or saved == identity:
        return
    changed = [k for k in identity if saved.get(k) != identity[k]]
    raise ConfigError(
        f"Search {project.name!r} in {project} was started with a different "
        f"{', '.join(changed)}. Resuming it would mix trials of two searches. "
        "Give this search another tune.name, or pass --overwrite (overwrite=True) to "
        "discard the saved one and start again."
    )


def _start_parent(search: SearchContext, state: SearchState) -> RunTracker:
    cfg = search.cfg
    kwargs = dict(
        experiment=search.experiment,
        uri=search.uri,
        run_name=cfg.tracking.run_name or f"search_{cfg.tune.search_name}",
        tags={
            **cfg.experiment.tags,
            "kerasflow.role": "search",
            "kerasflow.search": search.key,
            "kerasflow.search_fingerprint": search.fingerprint,
            "kerasflow.tuner": cfg.tune.tuner,
        },
        enabled=search.enabled,
    )
    run_id = state.data.get("parent_run_id")
    if run_id and search.enabled:
        try:
            return start_tracker(run_id=run_id, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the old run may be gone or in another store
            log.warning("cannot resume MLflow run %s (%s); starting a new parent run", run_id, exc)
    return start_tracker(**kwargs)


def _log_search_inputs(search: SearchContext, parent: RunTracker) -> None:
    cfg = search.cfg
    t = cfg.tune
    parent.log_params(
        {
            "tune.tuner": t.tuner,
            "tune.objective": t.objective.name,
            "tune.direction": search.direction,
            "tune.max_trials": t.max_trials if t.tuner != "hyperband" else "n/a",
            "tune.executions_per_trial": t.executions_per_trial,
            "tune.epochs": t.epochs or cfg.train.epochs,
            "tune.max_consecutive_failures": t.max_consecutive_failures,
            "tune.seed": t.seed if t.seed is not None else cfg.experiment.seed,
            "tune.name": t.search_name,
            **({"tune.hyperband": t.hyperband.model_dump()} if t.tuner == "hyperband" else {}),
            **({"tune.bayesian": t.bayesian.model_dump()} if t.tuner == "bayesian" else {}),
            "tune.space": {s.path: s.to_dict() for s in search.specs},
        }
    )
    parent.log_dict({s.path: s.to_dict() for s in search.specs}, "search_space.json")
    parent.log_text(cfg.to_yaml(), "search_config.yaml")


def _close_orphans(search: SearchContext, parent_run_id: str) -> int:
    """Children left RUNNING by a killed process: mark them KILLED (their trials run again)."""
    orphans = [
        r.run_id
        for r in mlflow_runs.child_runs(search.experiment, parent_run_id, search.uri)
        if r.status == "RUNNING"
    ]
    mlflow_runs.terminate(orphans, "KILLED", search.uri)
    if orphans:
        log.info("marked %d interrupted trial run(s) KILLED", len(orphans))
    return len(orphans)


def _make_tuner(search: SearchContext) -> KerasflowTuner:
    cfg = search.cfg
    epochs = None if cfg.tune.tuner == "hyperband" else cfg.tune.epochs
    hypermodel = ConfigHyperModel(cfg, search.specs, epochs=epochs)
    with contextlib.redirect_stdout(_LogStream()):
        tuner = KerasflowTuner(
            make_oracle(cfg, search.specs),
            hypermodel,
            search,
            directory=str(search.project_dir.parent),
            project_name=search.project_dir.name,
            overwrite=False,
            executions_per_trial=cfg.tune.executions_per_trial,
        )
    if not tuner.is_worker:
        tuner.oracle.verbose = 0
    return tuner


def _run_search(search: SearchContext, identity: dict[str, str], overwrite: bool) -> TuneResult:
    project = search.project_dir
    state = SearchState(project)
    if overwrite and project.exists():
        old = state.data.get("parent_run_id")
        if old and search.enabled:
            with contextlib.suppress(Exception):
                if mlflow_runs.run_status(old, search.uri) == "RUNNING":
                    mlflow_runs.terminate([old], "KILLED", search.uri)
        shutil.rmtree(project)
        state = SearchState(project)
    _check_identity(state, identity, project)
    parent = _start_parent(search, state)
    search.parent_run_id = parent.run_id
    state.update(
        identity=identity,
        fingerprint=search.fingerprint,
        parent_run_id=parent.run_id,
        status="running",
    )
    monitor = start_system_metrics(parent, search.cfg.tracking)
    try:
        if parent.enabled:
            _close_orphans(search, parent.run_id)
        if parent.resumed:
            parent.delete_tags(["kerasflow.error"])  # the failure this run resumes from
        else:
            _log_search_inputs(search, parent)
        tuner = _make_tuner(search)
        tuner.search()
        result = _finish(tuner, search, parent, state)
    except KeyboardInterrupt:
        parent.end("KILLED")
        state.update(status="killed")
        raise
    except BaseException as exc:
        parent.set_tags({"kerasflow.error": f"{type(exc).__name__}: {exc}"[:4000]})
        parent.end("FAILED")
        state.update(status="failed")
        raise
    finally:
        stop_system_metrics(monitor)
    parent.end("FINISHED")
    state.update(status="finished")
    return result


def _run_as_worker(search: SearchContext) -> TuneResult:
    search.parent_run_id = (
        wait_for_parent(search.experiment, search.key, search.fingerprint, search.uri)
        if search.enabled
        else None
    )
    tuner = _make_tuner(search)

    def row(trial) -> dict[str, Any]:
        return {
            "trial_id": trial.trial_id,
            "status": str(trial.status),
            "objective": _trial_score(trial, search.objective),
            **active_values(search.specs, trial.hyperparameters.values),
        }

    mine = run_worker(tuner, row)
    return TuneResult(
        best_hyperparameters={},
        best_trial_id=None,
        best_objective=None,
        objective=search.objective,
        direction=search.direction,
        trials=mine,
        test_metrics={},
        parent_run_id=search.parent_run_id,
        model_uri=None,
        registered=None,
        project_dir=search.project_dir,
        role="worker",
    )


# ------------------------------------------------------------------ finish
def _trial_score(trial, objective: str) -> float | None:
    if trial.score is not None and math.isfinite(trial.score):
        return float(trial.score)
    if trial.metrics.exists(objective):
        value = trial.metrics.get_best_value(objective)
        return float(value) if value is not None and math.isfinite(value) else None
    return None


def _trial_rows(tuner: KerasflowTuner, search: SearchContext, runs_by_trial: dict) -> list[dict]:
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        values = trial.hyperparameters.values
        run = runs_by_trial.get(trial_id)
        rows.append(
            {
                "trial_id": trial_id,
                "status": str(trial.status),
                "objective": _trial_score(trial, search.objective)
                if trial.status == "COMPLETED"
                else None,
                "run_id": run.run_id if run else None,
                **active_values(search.specs, values),
                **{k: v for k, v in values.items() if k in ("tuner/epochs", "tuner/trial_id")},
            }
        )
    return rows


def _finish(
    tuner: KerasflowTuner, search: SearchContext, parent: RunTracker, state: SearchState
) -> TuneResult:
    cfg = search.cfg
    runs_by_trial: dict[str, mlflow_runs.RunSummary] = {}
    if parent.enabled:
        for run in mlflow_runs.child_runs(search.experiment, parent.run_id, search.uri):
            tid = run.tags.get("kerasflow.trial_id")
            # Prefer a finished run of the trial over its killed or failed attempts.
            if tid is not None and (
                tid not in runs_by_trial or runs_by_trial[tid].status != "FINISHED"
            ):
                runs_by_trial[tid] = run
    rows = _trial_rows(tuner, search, runs_by_trial)
    param_names = [s.path for s in search.specs]
    if cfg.tune.tuner == "hyperband":
        param_names += ["tuner/epochs", "tuner/trial_id"]
    out = search.project_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    search_report.write_trials_csv(rows, out / "trials.csv", param_names)
    plots = search_report.write_plots(
        rows, out / "plots", param_names, search.objective, search.direction
    )
    parent.log_artifact(out / "trials.csv")
    for path in plots:
        parent.log_artifact(path, "plots")
    parent.log_metrics(
        {
            "trials_completed": float(sum(r["status"] == "COMPLETED" for r in rows)),
            "trials_failed": float(sum(r["status"] == "FAILED" for r in rows)),
        }
    )

    trials = tuner.oracle.trials
    completed = [
        trials[k]
        for k in sorted(trials)
        if trials[k].status == "COMPLETED" and _trial_score(trials[k], search.objective) is not None
    ]
    if not completed:
        raise ConfigError(
            f"No trial of search {search.key!r} completed ({len(rows)} ran). The failed trials' "
            "MLflow runs hold the errors (tag kerasflow.error)."
        )
    done = state.data.get("best_trial_id") if state.data.get("test_metrics") else None
    if done in trials:
        best = trials[done]  # evaluated and registered already: a re-run after the search ended
    else:
        # Ties go to the earliest trial, whatever order the oracle reloaded its trials in.
        sign = -1.0 if search.direction == "max" else 1.0
        best = min(completed, key=lambda t: sign * _trial_score(t, search.objective))
    best_values = active_values(search.specs, best.hyperparameters.values)
    best_score = _trial_score(best, search.objective)
    best_cfg = tuner.hypermodel.trial_config(
        best.hyperparameters.values, best.hyperparameters.values.get("tuner/epochs")
    )
    result = TuneResult(
        best_hyperparameters=best_values,
        best_trial_id=best.trial_id,
        best_objective=best_score,
        objective=search.objective,
        direction=search.direction,
        trials=rows,
        test_metrics={},
        parent_run_id=parent.run_id,
        model_uri=None,
        registered=None,
        project_dir=search.project_dir,
        config=best_cfg,
        role=search.role.kind,
        artifacts=["trials.csv", *(f"plots/{p.name}" for p in plots)],
    )
    if done == best.trial_id:
        result.test_metrics = state.data["test_metrics"]
        result.model_uri = state.data.get("model_uri")
        reg = state.data.get("registered")
        result.registered = model_registry.RegisteredVersion(**reg) if reg else None
        return result

    parent.log_params({f"best.{k}": v for k, v in best_values.items()})
    parent.log_metrics({"best_objective": best_score, f"best_{search.objective}": best_score})
    parent.set_tags(
        {
            "kerasflow.best_trial_id": best.trial_id,
            "kerasflow.best_run_id": getattr(runs_by_trial.get(best.trial_id), "run_id", ""),
        }
    )
    parent.log_text(best_cfg.to_yaml(), "config.yaml")
    parent.log_dict(best_values, "best_hyperparameters.json")

    # The end of the search is the end of a training run: the same function, for every task.
    prepared = tuner.hypermodel.data(best_cfg)
    keras.utils.set_random_seed(best_cfg.experiment.seed)
    model = build_compiled_model(best_cfg, prepared)
    load_weights(model, search.trial_weights(best.trial_id))
    data = tasks.get(best_cfg.experiment.task).training_data(prepared, model)
    finished = fit.finish_run(
        best_cfg,
        model,
        data,
        parent,
        out / "evaluation",
        work=search.project_dir,
        register_tags={"kerasflow.search": search.key, "kerasflow.trial_id": best.trial_id},
    )
    result.test_metrics = finished.test_metrics
    result.model_uri = finished.model_uri
    result.registered = finished.registered
    result.artifacts += finished.artifacts
    state.update(
        best_trial_id=best.trial_id,
        test_metrics=result.test_metrics,
        model_uri=result.model_uri,
        registered=result.registered.__dict__ if result.registered else None,
    )
    return result
