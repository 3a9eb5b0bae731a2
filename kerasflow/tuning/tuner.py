"""The search loop: Keras Tuner's oracles run trials of the run config, tracked in MLflow.

One search is one parent MLflow run (tuner settings, space, objective, the
best values, ``trials.csv`` and plots, the test evaluation and the model) and
one nested child run per trial (its values as params, per-epoch metrics, the
final ``objective``, FINISHED or FAILED with the error). The best trial's
best-epoch weights are evaluated on the test split, logged as the parent's
model and registered once; the ``champion`` alias moves only if they win.

State lives under ``tune.directory/<experiment.name>/<tune.name>/``: Keras
Tuner's oracle and trial files plus ``kerasflow_search.json`` (the parent
run and what the search was started with). Re-running the same config after a
kill resumes: finished trials are kept, the interrupted one runs again, its
orphaned child run is marked KILLED and the parent run continues.

Distributed: one chief (``chief=True``) serves the oracle over gRPC and
workers (``worker="1"``, ``chief_address="host:port"``) run trials, all
logging to one MLflow tracking server. The chief evaluates and registers.
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
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np

from kerasflow.config import RunConfig, as_config
from kerasflow.errors import ConfigError, KerasflowError, TrackingError
from kerasflow.tracking import MlflowCallback, RunTracker, start_tracker
from kerasflow.tracking import registry as model_registry
from kerasflow.tracking import runs as mlflow_runs
from kerasflow.training import evaluate as evaluation
from kerasflow.training import fit
from kerasflow.training.compile import build_compiled_model
from kerasflow.tuning import report as search_report
from kerasflow.tuning.hypermodel import ConfigHyperModel
from kerasflow.tuning.search_space import (
    ParamSpec,
    active_values,
    parse_space,
    space_fingerprint,
    validate_space,
)

log = logging.getLogger(__name__)

STATE_FILE = "kerasflow_search.json"
WEIGHTS = "best.weights.h5"
_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


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


@dataclass
class _Role:
    kind: str = "single"  # single | chief | worker
    tuner_id: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None

    @property
    def distributed(self) -> bool:
        return self.kind != "single"


def _role(chief: bool, port, host: str, worker, chief_address) -> _Role:
    if chief and worker is not None:
        raise ConfigError("Choose --chief or --worker ID, not both.")
    if chief:
        if not port:
            raise ConfigError("--chief needs --port P (the oracle's gRPC port).")
        return _Role("chief", "chief", host, int(port))
    if worker is not None:
        worker = str(worker)
        if not worker or "chief" in worker:
            raise ConfigError(
                f"--worker needs an ID without the word 'chief'. Received: {worker!r}"
            )
        if not chief_address or ":" not in chief_address:
            raise ConfigError(
                f"--worker needs --chief-address HOST:PORT. Received: {chief_address!r}"
            )
        chief_host, chief_port = chief_address.rsplit(":", 1)
        if not chief_port.isdigit():
            raise ConfigError(f"--chief-address port must be a number. Received: {chief_address!r}")
        return _Role("worker", f"worker{worker}", chief_host, int(chief_port))
    if chief_address:
        raise ConfigError("--chief-address is for workers: add --worker ID.")
    return _Role()


@contextlib.contextmanager
def _keras_tuner_env(role: _Role):
    """Keras Tuner reads its chief/worker settings from the environment; set them for the search."""
    saved = {k: os.environ.get(k) for k in _ENV}
    try:
        if role.distributed:
            os.environ["KERASTUNER_TUNER_ID"] = role.tuner_id
            os.environ["KERASTUNER_ORACLE_IP"] = role.host
            os.environ["KERASTUNER_ORACLE_PORT"] = str(role.port)
        else:
            for key in _ENV:
                os.environ.pop(key, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


# ------------------------------------------------------------------ oracle
def make_oracle(cfg: RunConfig, specs: list[ParamSpec]) -> keras_tuner.Oracle:
    """The Keras Tuner oracle (how to search) named by ``tune.tuner``."""
    t = cfg.tune
    common = dict(
        objective=keras_tuner.Objective(t.objective.name, t.objective.resolved_direction),
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


# ------------------------------------------------------------------- trial
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


def _load_weights(model: keras.Model, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        # The checkpoint also holds the trial's optimizer state, which a fresh model skips.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(str(path))


class _Search:
    """Everything a trial needs to know about its search."""

    def __init__(self, cfg: RunConfig, specs, role: _Role, project_dir: Path, fingerprint: str):
        self.cfg = cfg
        self.specs = specs
        self.role = role
        self.project_dir = project_dir
        self.fingerprint = fingerprint
        self.objective = cfg.tune.objective.name
        self.direction = cfg.tune.objective.resolved_direction
        self.experiment = cfg.tracking_experiment
        self.uri = cfg.tracking.uri
        self.enabled = cfg.tracking.enabled
        self.key = f"{cfg.experiment.name}/{cfg.tune.search_name}"
        self.parent_run_id: str | None = None

    def trial_dir(self, trial_id: str) -> Path:
        path = self.project_dir / f"trial_{trial_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def trial_weights(self, trial_id: str) -> Path:
        """The trial's best-epoch weights; fetched from its MLflow run if another host ran it."""
        path = self.trial_dir(trial_id) / WEIGHTS
        if path.is_file() or not self.enabled:
            return path
        runs = mlflow_runs.find_runs(
            self.experiment,
            {mlflow_runs.PARENT_TAG: self.parent_run_id, "kerasflow.trial_id": trial_id},
            self.uri,
            statuses=("FINISHED",),
        )
        if not runs:
            raise TrackingError(
                f"No weights for trial {trial_id}: {path} is missing and no finished MLflow "
                "run of that trial holds them. Run the search again with --overwrite."
            )
        got = mlflow_runs.download_artifact(runs[-1].run_id, WEIGHTS, str(path.parent), self.uri)
        return Path(got)


def _serve_oracle(oracle, role: _Role, poll: float = 0.5) -> None:
    """Serve ``oracle`` to workers over gRPC until every trial has ended and every worker left."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{role.host}:{role.port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"The chief cannot listen on {address}. Choose a free --port.")
    server.start()
    log.info("chief: serving the oracle on %s", address)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2)


class KerasflowTuner(keras_tuner.Tuner):
    """The loop that runs a search (Keras Tuner's ``Tuner``): one tracked fit per trial."""

    def __init__(self, oracle, hypermodel: ConfigHyperModel, search: _Search, **kwargs):
        self.search_ctx = search
        super().__init__(oracle, hypermodel, **kwargs)

    def _populate_initial_space(self):
        # The whole space, conditional parameters included, is declared up front,
        # so the default loop that builds models to discover conditions is not needed.
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def on_search_begin(self):
        # Saved before the first trial so that a kill in trial 0 still resumes.
        if not self._is_worker():
            self.save()

    def search(self, *args, **kwargs):
        if self.search_ctx.role.kind == "chief":
            # Keras Tuner's own chief loop polls for the end every 20 s; this one every 0.5 s.
            self.save()
            _serve_oracle(self.oracle, self.search_ctx.role)
            return
        super().search(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        s = self.search_ctx
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
            nested=not self._is_worker(),
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

    def _fit_trial(self, trial, cfg: RunConfig, tracker: RunTracker, values: dict) -> float:
        s = self.search_ctx
        prepared = self.hypermodel.data(cfg)
        tracker.log_params(cfg.to_dict())
        tracker.set_tags({"kerasflow.model": cfg.model.name, "kerasflow.task": cfg.experiment.task})
        has_val = prepared.size("validation") > 0
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        previous = values.get("tuner/trial_id")
        trial_dir = s.trial_dir(trial.trial_id)
        bests: list[tuple[float, Path]] = []
        for execution in range(s.cfg.tune.executions_per_trial):
            keras.utils.set_random_seed(cfg.experiment.seed + execution)
            model = build_compiled_model(cfg, prepared)
            if previous:
                _load_weights(model, s.trial_weights(str(previous)))
            # Made after the model and fed to fit as train() does, so that a trial of a config
            # reproduces `kerasflow train` of it (the datasets' random ops take seeds from the
            # global one, and the order of examples depends on how the dataset is iterated).
            train_ds = prepared.dataset("train")
            val_ds = prepared.dataset("validation") if has_val else None
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
                # First, as in train(): e.g. val_map50 must be in the logs before the
                # objective is checked, logged, checkpointed and recorded by History.
                *fit.epoch_metric_callbacks(cfg, prepared, has_val),
                _RequireMetric(s.objective),
                metrics_cb if tracker.enabled else keras.callbacks.Callback(),
                checkpoint,
                *fit.early_stopping(cfg, fit.task_monitor(cfg, has_val)),
            ]
            history = fit.fit_model(
                model, cfg, prepared, train_ds, val_ds, callbacks, initial_epoch=initial_epoch
            )
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
    role = _role(chief, port, host, worker, chief_address)
    specs = parse_space(cfg.tune.space)
    validate_space(cfg.to_dict(), specs)
    project = project_dir_for(cfg)
    identity = search_identity(cfg, specs)
    search = _Search(cfg, specs, role, project, _fingerprint(identity))
    with _keras_tuner_env(role):
        if role.kind == "worker":
            return _run_worker(search)
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


def _start_parent(search: _Search, state: SearchState) -> RunTracker:
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


def _log_search_inputs(search: _Search, parent: RunTracker) -> None:
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


def _close_orphans(search: _Search, parent_run_id: str) -> int:
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


def _make_tuner(search: _Search) -> KerasflowTuner:
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
    if not tuner._is_worker():
        tuner.oracle.verbose = 0
    return tuner


def _search_loop(tuner: KerasflowTuner, search: _Search) -> None:
    try:
        # Not redirected: Keras' own fit progress goes to stdout as in train(); the oracle's
        # display is off (verbose 0) and no trial is retried, so Keras Tuner prints nothing.
        tuner.search()
    except keras_tuner.errors.FatalError as exc:
        cause = exc.__cause__
        if isinstance(cause, KerasflowError):
            raise cause from None
        raise
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        raise ConfigError(
            f"{search.cfg.tune.max_consecutive_failures} trials in a row failed "
            "(tune.max_consecutive_failures), so the search stopped. Each failed trial's "
            "MLflow run holds its error (tag kerasflow.error, error.txt); fix the space or "
            f"the config. Last error:\n{str(exc).splitlines()[-1] if str(exc) else exc}"
        ) from None


def _run_search(search: _Search, identity: dict[str, str], overwrite: bool) -> TuneResult:
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
    try:
        if parent.enabled:
            _close_orphans(search, parent.run_id)
        if not parent.resumed:
            _log_search_inputs(search, parent)
        tuner = _make_tuner(search)
        _search_loop(tuner, search)
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
    parent.end("FINISHED")
    state.update(status="finished")
    return result


def _wait_for_parent(search: _Search, timeout: float = 600.0) -> str | None:
    """A worker finds the chief's parent run in the tracking store (by the search's tags)."""
    if not search.enabled:
        return None
    deadline = time.monotonic() + timeout
    while True:
        runs = mlflow_runs.find_runs(
            search.experiment,
            {"kerasflow.role": "search", "kerasflow.search": search.key},
            search.uri,
            statuses=("RUNNING",),
        )
        if runs:
            parent = runs[-1]
            theirs = parent.tags.get("kerasflow.search_fingerprint")
            if theirs != search.fingerprint:
                raise ConfigError(
                    f"The chief's search {search.key!r} (run {parent.run_id}) was started from "
                    "another config or space than this worker's. Start workers with the chief's "
                    "config file."
                )
            return parent.run_id
        if time.monotonic() > deadline:
            raise TrackingError(
                f"No running search {search.key!r} in experiment {search.experiment!r} at "
                f"{search.uri or 'the default store'} after {timeout:.0f}s. Start the chief "
                "first, with the same tracking.uri."
            )
        time.sleep(1.0)


def _run_worker(search: _Search) -> TuneResult:
    search.parent_run_id = _wait_for_parent(search)
    tuner = _make_tuner(search)
    mine: list[dict[str, Any]] = []
    original = tuner.on_trial_end

    def record(trial):
        mine.append(
            {
                "trial_id": trial.trial_id,
                "status": str(trial.status),
                "objective": _trial_score(trial, search.objective),
                **active_values(search.specs, trial.hyperparameters.values),
            }
        )
        original(trial)

    tuner.on_trial_end = record
    _search_loop(tuner, search)
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


def _trial_rows(tuner: KerasflowTuner, search: _Search, runs_by_trial: dict) -> list[dict]:
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
    tuner: KerasflowTuner, search: _Search, parent: RunTracker, state: SearchState
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

    prepared = tuner.hypermodel.data(best_cfg)
    keras.utils.set_random_seed(best_cfg.experiment.seed)
    model = build_compiled_model(best_cfg, prepared)
    _load_weights(model, search.trial_weights(best.trial_id))
    eval_dir = out / "evaluation"
    eval_dir.mkdir(exist_ok=True)
    task = best_cfg.experiment.task
    report = evaluation.evaluate_split(model, prepared, "test", task, out_dir=eval_dir)
    report["loss"] = float(
        model.evaluate(prepared.dataset("test", training=False), verbose=0, return_dict=True)[
            "loss"
        ]
    )
    (eval_dir / "evaluation_test.json").write_text(json.dumps(report, indent=2))
    result.test_metrics = evaluation.scalar_metrics(report)
    parent.log_metrics(result.test_metrics)
    for path in sorted(eval_dir.iterdir()):
        parent.log_artifact(path)
        result.artifacts.append(path.name)

    if parent.enabled and cfg.tracking.log_model:
        existing = mlflow_runs.run_tags(parent.run_id, parent.uri).get(
            "kerasflow.registered_version"
        )
        example = next(iter(prepared.dataset("test", training=False)))[0].numpy()[:4]
        result.model_uri = parent.log_keras_model(model, example)
        if cfg.tracking.register_model and not existing:
            result.registered = model_registry.register(
                result.model_uri,
                best_cfg.registered_model_name,
                parent.run_id,
                metric=cfg.champion_metric,
                mode=cfg.tracking.champion_mode,
                uri=parent.uri,
                tags={"kerasflow.search": search.key, "kerasflow.trial_id": best.trial_id},
            )
            parent.set_tags({"kerasflow.registered_version": result.registered.version})
    state.update(
        best_trial_id=best.trial_id,
        test_metrics=result.test_metrics,
        model_uri=result.model_uri,
        registered=result.registered.__dict__ if result.registered else None,
    )
    return result
