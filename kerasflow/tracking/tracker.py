"""Logging one run to MLflow: params, per-epoch metrics, artifacts, the Keras model.

:class:`RunTracker` is the only object the rest of kerasflow logs through, so
MLflow calls stay in this package. :class:`MlflowCallback` logs any
``model.fit`` to MLflow, in kerasflow runs and in users' own scripts.

Example:
    >>> from kerasflow.tracking import MlflowCallback
    >>> model.fit(ds, epochs=5, callbacks=[MlflowCallback(experiment="my-exp")])
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import keras
import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from kerasflow.errors import TrackingError
from kerasflow.tracking.store import artifact_root_for, resolve_tracking_uri

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
_BATCH = 100  # MLflow accepts at most 100 params per log_batch call
ERROR_TAG = "kerasflow.error"


def flatten_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists and empty mappings become JSON text."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[name] = text[:MAX_PARAM_LENGTH]
    return out


# What a full disk, a read-only folder or a read-only database raises while a run is written.
STORE_ERRORS = (OSError, MlflowException, SQLAlchemyError)


def store_error(
    exc: BaseException, uri: str | None, doing: str, artifacts: str | None = None
) -> TrackingError:
    """One line for a failed write to the store: what was being done, where, and what to do."""
    first = _one_line(exc)
    if isinstance(exc, OSError) and exc.filename:
        first = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    where = f"{uri} (artifacts: {artifacts})" if artifacts else f"{uri}"
    return TrackingError(
        f"{doing} failed writing to the MLflow store {where}: {first}. Free disk space or make "
        "the store writable, then run the same command again: it continues this run, and "
        "the steps already done are not repeated."
    )


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` in one line: the database's own words for SQL errors."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy keeps the driver's error here
    lines = [
        line.strip()
        for line in str(cause).splitlines()
        if line.strip() and not line.startswith("(raised as a result of")
    ]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = artifact_root_for(uri)
    location = f"{root}/{name}" if root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our look-up and create.
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class RunTracker:
    """One MLflow run, started (or resumed) and kept active until :meth:`end`.

    Use :func:`start_tracker` to make one. A tracker with ``run_id=None`` is
    the disabled tracker: every call is a no-op.
    """

    def __init__(self, uri: str | None, run_id: str | None, experiment_id: str | None = None):
        self.uri = uri
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.client = MlflowClient(uri) if run_id else None
        self.resumed = False

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    @property
    def artifact_uri(self) -> str | None:
        """Where the run's artifacts go (None when disabled or the store cannot say)."""
        if not self.enabled:
            return None
        try:
            return self.client.get_run(self.run_id).info.artifact_uri
        except STORE_ERRORS:
            return None

    # ---- params, tags, metrics
    def log_params(self, params: dict[str, Any]) -> None:
        """Log params; keys already logged with the same value (a resumed run) are skipped."""
        if not self.enabled:
            return
        existing = self.client.get_run(self.run_id).data.params
        items = []
        for key, value in flatten_params(params).items():
            if key in existing:
                if existing[key] != value:
                    log.warning("param %s already logged as %r; keeping it", key, existing[key])
                continue
            items.append(Param(key, value))
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH])

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled:
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, str(value))

    def delete_tags(self, keys: list[str]) -> None:
        """Remove tags that no longer hold (an error tag of an attempt a resumed run recovered from)."""
        if not self.enabled:
            return
        present = self.client.get_run(self.run_id).data.tags
        for key in keys:
            if key in present:
                self.client.delete_tag(self.run_id, key)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self.enabled or not metrics:
            return
        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def metric_history(self, key: str) -> dict[int, float]:
        """``{step: value}`` already logged for ``key`` (empty when disabled)."""
        if not self.enabled:
            return {}
        return {m.step: m.value for m in self.client.get_metric_history(self.run_id, key)}

    def metrics(self) -> dict[str, float]:
        return dict(self.client.get_run(self.run_id).data.metrics) if self.enabled else {}

    # ---- artifacts
    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_dict(self.run_id, data, artifact_file)

    def log_table(self, rows: list[dict], artifact_file: str) -> None:
        """Rows of one shape as an MLflow table (shown in the UI's artifact and evaluation views)."""
        if self.enabled and rows:
            columns = {key: [row.get(key) for row in rows] for key in rows[0]}
            self.client.log_table(self.run_id, columns, artifact_file)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def download_artifact(self, path: str, dst: str | os.PathLike) -> str:
        return mlflow.artifacts.download_artifacts(
            run_id=self.run_id, artifact_path=path, dst_path=str(dst), tracking_uri=self.uri
        )

    # ---- model
    def log_keras_model(self, model, example_input, name: str = "model") -> str | None:
        """Log ``model`` with the MLflow Keras flavor and an inferred signature.

        The signature comes from ``example_input`` and the model's prediction on
        it (mlflow 3.17's ``input_example=`` argument fails, so the example is
        logged beside the model as ``input_example.json`` instead). Returns the
        model URI, or None when tracking is disabled.
        """
        if not self.enabled:
            return None
        import numpy as np
        from mlflow.models import infer_signature

        from kerasflow.version import __version__

        # An uncompiled copy: the registered model is for inference, and a compiled
        # one would need kerasflow's schedule/loss/metric classes to load anywhere.
        # (keras.models.clone_model would compile the copy again.)
        inference = model.__class__.from_config(model.get_config())
        inference.set_weights(model.get_weights())
        model = inference
        example = np.asarray(example_input, dtype=np.float32)
        signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
        requirements = [
            f"tensorflow=={_version('tensorflow')}",
            f"keras=={keras.__version__}",
            f"kerasflow=={__version__}",
        ]
        active = mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:
            raise TrackingError(
                f"Run {self.run_id} is not the active MLflow run; cannot log a model."
            )
        info = mlflow.keras.log_model(
            model, name=name, signature=signature, pip_requirements=requirements
        )
        self.log_dict({"inputs": example[:2].tolist()}, f"{name}_input_example.json")
        return info.model_uri

    def end(self, status: str = "FINISHED") -> None:
        """End the run with ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if not self.enabled:
            return
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run(status)
        else:
            self.client.set_terminated(self.run_id, status)

    def end_quietly(self, status: str, error: str | None = None) -> None:
        """End the run after a failure; a store that cannot take it (full, read-only) is logged.

        ``error`` (one line) is kept as the run's ``kerasflow.error`` tag.
        """
        try:
            if error:
                self.set_tags({ERROR_TAG: error[:4000]})
            self.end(status)
        except STORE_ERRORS as exc:
            log.warning("could not mark MLflow run %s %s: %s", self.run_id, status, _one_line(exc))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def start_tracker(
    experiment: str,
    uri: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    enabled: bool = True,
) -> RunTracker:
    """Start a new MLflow run, or resume ``run_id``, and make it the active run.

    Args:
        experiment: experiment name (created with artifacts beside a SQLite store).
        uri: tracking URI (default: see :func:`kerasflow.tracking.store.resolve_tracking_uri`).
        run_id: an existing run to continue (after a crash or a kill).
        nested: start as a child of the currently active run.
        enabled: False returns the disabled tracker.
    """
    if not enabled:
        return RunTracker(None, None)
    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_id = _ensure_experiment(client, experiment, uri)
    if run_id is not None:
        run = client.get_run(run_id)
        if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
            client.update_run(run_id, status="RUNNING")
        # MLflow refuses to resume a run of another experiment than the process's active
        # one (set by any earlier mlflow.set_experiment in this process): make it the run's.
        mlflow.set_experiment(experiment_id=run.info.experiment_id)
        mlflow.start_run(run_id=run_id, nested=nested)
        tracker = RunTracker(uri, run_id, exp_id)
        tracker.resumed = True
    else:
        run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags, nested=nested)
        tracker = RunTracker(uri, run.info.run_id, exp_id)
    log.info("MLflow run %s in experiment %r at %s", tracker.run_id, experiment, uri)
    return tracker


class MlflowCallback(keras.callbacks.Callback):
    """Log a ``model.fit`` to MLflow: every epoch's metrics (step = epoch number) and the learning rate.

    With a ``tracker`` it logs into that run; otherwise it logs into the active
    MLflow run, or starts a run in ``experiment`` at train begin and ends it at
    train end. Epochs whose metrics are already in the run (a resumed run) are
    not logged twice.

    Args:
        tracker: a :class:`RunTracker` to log into.
        experiment: experiment name when the callback starts its own run.
        tracking_uri: store for its own run (default: kerasflow's local store).
        run_name: name of its own run.
    """

    def __init__(
        self,
        tracker: RunTracker | None = None,
        experiment: str = "default",
        tracking_uri: str | None = None,
        run_name: str | None = None,
    ):
        super().__init__()
        self.tracker = tracker
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.run_name = run_name
        self._own = False
        self._logged: set[int] = set()

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id if self.tracker else None

    def on_train_begin(self, logs=None):
        if self.tracker is None:
            active = mlflow.active_run()
            if active is not None:
                uri = mlflow.get_tracking_uri()
                self.tracker = RunTracker(uri, active.info.run_id, active.info.experiment_id)
            else:
                self.tracker = start_tracker(
                    self.experiment, self.tracking_uri, run_name=self.run_name
                )
                self._own = True
        self._logged = set(self.tracker.metric_history("loss"))

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if step in self._logged:
            return
        metrics = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        lr = _current_lr(self.model)
        if lr is not None:
            metrics.setdefault("learning_rate", lr)
        self.tracker.log_metrics(metrics, step=step)
        self._logged.add(step)

    def on_train_end(self, logs=None):
        if self._own:
            self.tracker.end("FINISHED")


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _current_lr(model) -> float | None:
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    try:
        lr = opt.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)
    except (TypeError, ValueError, AttributeError):
        return None
