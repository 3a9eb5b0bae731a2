"""``train(config)``: data -> model -> compile -> fit -> evaluate -> track -> register.

Resuming: every run keeps its state under ``experiment.work_dir/<name>/<fingerprint>/``
(the fingerprint hashes everything that decides what is trained). Keras'
``BackupAndRestore`` saves weights, optimizer state and the epoch after each
epoch; a ``state.json`` remembers the MLflow run. Re-running the same config
after a crash or a kill (Ctrl-C, SIGTERM, SIGKILL) continues from the last
finished epoch in the same MLflow run. Callback order matters: metrics are
logged to MLflow and the best checkpoint is written *before* the backup marks
the epoch finished, so a kill between the two re-runs that epoch without
logging it twice.

The lifecycle of one run (see ``docs/run_lifecycle.md``): the work folder is
locked (``run_lock``), the backup checked (``backup``), the MLflow run started
or resumed; after ``fit`` the trained weights are saved and ``state.json``
says so (a re-run then goes straight to finishing); each finishing step that
writes to MLflow (test metrics, the logged model, the registration) is recorded
there when done, so a re-run after a failure while finishing repeats none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasflow import tasks
from kerasflow.config import RunConfig, as_config
from kerasflow.errors import ConfigError, WorkerLostError
from kerasflow.serving.export import export_after_training
from kerasflow.serving.formats import export_after_run
from kerasflow.tasks import plots
from kerasflow.tasks.base import metric_mode
from kerasflow.tracking import MlflowCallback, RunTracker, model_registry, start_tracker
from kerasflow.tracking import runs as mlflow_runs
from kerasflow.tracking.datasets import log_datasets
from kerasflow.tracking.system_metrics import start_system_metrics, stop_system_metrics
from kerasflow.tracking.tracker import STORE_ERRORS, store_error
from kerasflow.tracking.version_notes import annotate_version
from kerasflow.training import (
    backup,
    custom_loop,
    distribute,
    ema,
    finetune,
    robustness,
    run_lock,
    signals,
    transfer,
)
from kerasflow.training import evaluate as evaluation
from kerasflow.training.compile import build_compiled_model, steps_per_epoch

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: keras.Model
    history: dict[str, dict[int, float]]
    test_metrics: dict[str, float]
    report: dict[str, Any]
    run_id: str | None
    model_uri: str | None
    registered: model_registry.RegisteredVersion | None
    work_dir: Path
    config: RunConfig
    initial_epoch: int = 0
    artifacts: list[str] = field(default_factory=list)

    @property
    def registered_version(self) -> str | None:
        return self.registered.version if self.registered else None


TRAINED_WEIGHTS = "trained.weights.h5"  # the model finish_run gets, saved once fit is over


class RunState:
    """``state.json`` in the run's work dir: the MLflow run, its status and the steps done.

    ``status`` is ``running``, ``killed``, ``failed`` or ``finished``; any but
    ``finished`` is resumed by the next run of the config. ``fit_done`` says
    the trained weights are saved; ``finished_steps`` lists the finishing steps
    already written to MLflow. ``RunState(None)`` keeps the same in memory only
    (a search's final step).
    """

    def __init__(self, work_dir: Path | None):
        self.path = work_dir / "state.json" if work_dir is not None else None
        self.data: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("ignoring unreadable %s", self.path)

    @property
    def unfinished(self) -> bool:
        return self.data.get("status") in ("running", "killed", "failed")

    def update(self, **values) -> None:
        self.data.update(values)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)  # atomic: a kill never leaves half a file

    def reset(self) -> None:
        """Forget the previous run (a new MLflow run starts)."""
        self.data = {}
        self.update()

    def done(self, step: str) -> bool:
        return step in self.data.get("finished_steps", [])

    def mark(self, step: str, **values) -> None:
        self.update(finished_steps=[*self.data.get("finished_steps", []), step], **values)


class _BestTracker(keras.callbacks.Callback):
    """Persists the best checkpoint's value so a resumed run does not overwrite it with a worse one."""

    def __init__(self, checkpoint: keras.callbacks.ModelCheckpoint, state: RunState):
        super().__init__()
        self.checkpoint = checkpoint
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        best = self.checkpoint.best
        if best is not None and np.isfinite(best):
            self.state.update(best=float(best))


def _verbosity(setting) -> int:
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


def set_seeds(config: RunConfig) -> None:
    keras.utils.set_random_seed(config.experiment.seed)
    if config.experiment.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def work_dir_for(config: RunConfig) -> Path:
    return (
        Path(config.experiment.work_dir).resolve() / config.experiment.name / config.fingerprint()
    )


def run_name_for(config: RunConfig) -> str:
    """``tracking.run_name``, else ``<model>-<yyyymmdd-hhmmss>`` (UTC): distinct and readable."""
    return (
        config.tracking.run_name
        or f"{config.model.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    )


def _start(config: RunConfig, state: RunState, work: Path) -> RunTracker:
    """Resume the MLflow run of an unfinished run of this config, else start a new one.

    A new run never continues an old run's backup: its metrics would start
    in the middle, so the backup is discarded and training starts over.
    """
    tr = config.tracking
    run_id = state.data.get("run_id") if (config.train.resume and state.unfinished) else None
    kwargs = dict(
        experiment=config.tracking_experiment,
        uri=tr.uri,
        run_name=run_name_for(config),
        tags={**config.experiment.tags, "kerasflow.fingerprint": config.fingerprint()},
        enabled=tr.enabled,
    )
    if not tr.enabled:
        if not run_id:
            state.reset()
        return start_tracker(**kwargs)
    try:
        if run_id:
            try:
                tracker = start_tracker(run_id=run_id, **kwargs)
                log.info("continuing MLflow run %s (was %s)", run_id, state.data.get("status"))
                return tracker
            except Exception as exc:  # noqa: BLE001 - the old run may be gone or in another store
                log.warning("cannot resume MLflow run %s (%s); starting a new run", run_id, exc)
        tracker = start_tracker(**kwargs)
    except STORE_ERRORS as exc:
        raise store_error(exc, tr.uri, "starting the MLflow run") from exc
    if (work / "backup").exists():
        log.warning("the backup in %s belongs to no unfinished run; starting over", work)
        backup.discard(work / "backup")
    state.reset()
    return tracker


def _discard_run(cfg: RunConfig, work: Path, state: RunState) -> None:
    """``--restart``: forget this config's unfinished run (marked KILLED) and its backup."""
    old = state.data.get("run_id")
    if old and state.unfinished and cfg.tracking.enabled:
        try:
            if mlflow_runs.run_status(old, cfg.tracking.uri) == "RUNNING":
                mlflow_runs.terminate([old], "KILLED", cfg.tracking.uri)
        except Exception as exc:  # noqa: BLE001 - the old run may be gone; restarting goes on
            log.warning("could not mark the old MLflow run %s KILLED: %s", old, exc)
    backup.discard(work / "backup")
    for name in ("best.weights.h5", TRAINED_WEIGHTS):
        (work / name).unlink(missing_ok=True)
    state.reset()
    log.warning("--restart: discarded the backup and state in %s; training starts over", work)


@contextlib.contextmanager
def quiet_input_warnings():
    """Hide Keras warnings that kerasflow's input contract makes meaningless.

    ``fit`` gets a shuffled, repeated tf.data pipeline with explicit steps, so
    Keras' ``shuffle=True ... will be ignored`` and, at the end of a finite
    evaluation pass, ``ran out of data`` say nothing about a kerasflow run.
    Only these two messages are hidden.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed, but will be ignored")
        warnings.filterwarnings("ignore", message=r"Your input ran out of data")
        yield


def train(
    config: RunConfig | str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    *,
    prepared=None,
    restart: bool = False,
) -> TrainResult:
    """Train, evaluate, track and register a model from a run config.

    Args:
        config: a :class:`RunConfig`, a YAML path, or None for the packaged default.
        overrides: ``["train.epochs=5", ...]`` applied on top.
        prepared: data already prepared from this config's ``data`` section, e.g.
            ``pipelines.prepare(cfg.data, 42)`` shared by runs of several
            ``experiment.seed`` values so that all of them train and test on one
            split (the split follows the seed it was prepared with). Default:
            prepared here from ``data`` and ``experiment.seed``.
        restart: discard an unfinished run's backup and state (its MLflow run is
            marked KILLED) and train from the first epoch in a new run.

    Raises:
        ConfigError: ``prepared`` was made from another ``data`` section.
        BusyError: another live process is training this config (same work folder).
        DataError: the resume backup is unreadable (``restart=True`` starts over).
        TrackingError: the MLflow store cannot be written (full, read-only); the
            run is marked FAILED and running again continues it.
        Terminated: SIGTERM arrived (handled like Ctrl-C: the run is marked KILLED).

    Example:
        >>> import kerasflow
        >>> result = kerasflow.train(kerasflow.load_config(None, ["train.epochs=2"]))
        >>> result.test_metrics["test_accuracy"]
    """
    cfg = as_config(config, overrides)
    if prepared is not None and prepared.data_config != cfg.data:
        raise ConfigError(
            "train(prepared=...) got data prepared from another data: section than the "
            "config's. Prepare it from this config's data section (pipelines.prepare(cfg.data, "
            f"seed)). Received data.source={prepared.data_config.source!r}, "
            f"config data.source={cfg.data.source!r}"
        )
    task = tasks.get(cfg.experiment.task)
    task.check_config(cfg)  # loss, metrics and monitors, before any data is read
    if cfg.train.strategy == "multi_worker" and not task.multi_worker:
        _no_multi_worker(cfg, task)
    dist = distribute.setup(cfg.train)  # it may split the CPU into logical devices
    if dist.custom_loop and not task.multi_worker:  # train.strategy: auto chose it
        _no_multi_worker(cfg, task)
    finetune.check(cfg)
    if dist.custom_loop and (cfg.train.finetune or cfg.train.class_weight):
        raise ConfigError(
            "train.finetune and train.class_weight are not supported by the multi-worker loop "
            "(train.strategy: multi_worker). Use train.strategy: mirrored or default."
        )
    if dist.custom_loop and cfg.train.adversarial is not None:  # its own step, not train_step
        raise ConfigError(
            "train.adversarial is not supported by the multi-worker loop (train.strategy "
            f"{cfg.train.strategy!r}). Use train.strategy: default or mirrored, or remove it."
        )
    if not dist.is_chief:  # only the chief logs to MLflow (tracking is not in the fingerprint)
        cfg = cfg.model_copy(
            update={"tracking": cfg.tracking.model_copy(update={"enabled": False})}
        )
    set_seeds(cfg)
    work = work_dir_for(cfg)
    other_split = prepared is not None and prepared.seed != cfg.experiment.seed
    if other_split:  # its state must not mix with that of a run on the config's own split
        work = work.with_name(f"{work.name}-split{prepared.seed}")
    work = dist.own_dir(work)
    with run_lock.hold(work), signals.stop_on_signals():
        state = RunState(work)
        if restart:
            _discard_run(cfg, work, state)
        if cfg.train.resume and not state.data.get("fit_done"):
            backup.restore_point(work / "backup")  # a broken backup stops before any run
        prepared = task.prepare(cfg.data, cfg.experiment.seed) if prepared is None else prepared
        model, data = _build(cfg, task, prepared)
        tracker = _start(cfg, state, work)
        try:
            if other_split:
                tracker.set_tags({"kerasflow.split_seed": str(prepared.seed)})
            state.update(run_id=tracker.run_id, status="running", config=cfg.to_dict())
            monitor = start_system_metrics(tracker, cfg.tracking)
            try:
                with quiet_input_warnings():
                    result = _train(cfg, model, data, prepared, tracker, state, work)
            finally:
                stop_system_metrics(monitor)
        except KeyboardInterrupt:
            tracker.end_quietly("KILLED")
            _quietly(state.update, status="killed")
            raise
        except WorkerLostError:
            # state stays "running": the restarted job resumes this MLflow run
            tracker.end("KILLED")
            raise
        except BaseException as exc:
            tracker.end_quietly("FAILED", error=f"{type(exc).__name__}: {exc}")
            _quietly(state.update, status="failed")
            if isinstance(exc, STORE_ERRORS) and not isinstance(exc, OSError):
                # e.g. logging an epoch's metrics to a store that went read-only
                raise store_error(exc, cfg.tracking.uri, f"MLflow run {tracker.run_id}") from exc
            raise
        try:
            tracker.end("FINISHED")
        except STORE_ERRORS as exc:
            _quietly(state.update, status="failed")
            raise store_error(exc, cfg.tracking.uri, "ending the MLflow run") from exc
        state.update(status="finished")
        return result


def _quietly(write, **values) -> None:
    """A state write after a failure: a full disk must not hide the failure itself."""
    try:
        write(**values)
    except OSError as exc:
        log.warning("could not record the run's status: %s", exc)


def _no_multi_worker(cfg: RunConfig, task) -> None:
    raise ConfigError(
        f"train.strategy {cfg.train.strategy!r} runs kerasflow's multi-worker loop, which does "
        f"not support experiment.task {task.name!r} (its data cannot be sharded per worker). "
        "Use train.strategy: mirrored (one machine, several devices) or default."
    )


def log_run_inputs(cfg: RunConfig, prepared, model, tracker: RunTracker) -> None:
    """Log what a run starts from: params, config, model summary, split assignment, skipped files."""
    tracker.log_params(cfg.to_dict())
    tracker.set_tags({"kerasflow.model": cfg.model.name, "kerasflow.task": cfg.experiment.task})
    tracker.log_params(
        {
            "model.num_params": model.count_params(),
            "data.num_classes": prepared.num_classes,
            **{f"data.size.{s}": prepared.size(s) for s in ("train", "validation", "test")},
        }
    )
    tracker.log_text(cfg.to_yaml(), "config.yaml")
    lines: list[str] = []
    model.summary(print_fn=lambda s, **_: lines.append(s))
    tracker.log_text("\n".join(lines), "model_summary.txt")
    rows = ["key,split,target"] + [f"{k},{s},{y}" for k, s, y in prepared.split_table()]
    tracker.log_text("\n".join(rows) + "\n", "splits.csv")
    skipped = getattr(prepared, "skipped", None) or []
    tracker.log_metrics({"data_skipped_files": float(len(skipped))})
    if skipped:
        tracker.log_text("".join(f"{p}\t{why}\n" for p, why in skipped), "skipped_files.txt")
    log_datasets(tracker, cfg.data, prepared)


def _history(tracker: RunTracker, fit_history, initial_epoch: int) -> dict[str, dict[int, float]]:
    keys = list(fit_history.history)
    if tracker.enabled:
        return {k: tracker.metric_history(k) for k in keys}
    return {
        k: {initial_epoch + i + 1: float(v) for i, v in enumerate(vals)}
        for k, vals in fit_history.history.items()
    }


def monitor_for(cfg: RunConfig, setting, has_val: bool) -> tuple[str, str]:
    """``(key in the epoch's logs, mode)`` of a monitor section (checkpoint, early stopping).

    ``auto`` is the task's headline validation metric; ``val_`` names lose their
    prefix without a validation split; ``auto`` modes follow the name.
    """
    task = tasks.get(cfg.experiment.task)
    key = task.resolve_monitor(setting.monitor, cfg.compile, has_val)
    return key, metric_mode(key, setting.mode)


def evaluation_split(data) -> str:
    """The split that per-epoch validation metrics use: validation, else train."""
    return "validation" if data.size("validation") > 0 else "train"


def early_stopping(cfg: RunConfig, has_val: bool) -> list[keras.callbacks.Callback]:
    """``train.early_stopping`` as a callback (none when disabled)."""
    es = cfg.train.early_stopping
    if not es.enabled:
        return []
    key, mode = monitor_for(cfg, es, has_val)
    return [
        keras.callbacks.EarlyStopping(
            monitor=key, mode=mode, patience=es.patience, min_delta=es.min_delta
        )
    ]


def fit_input(cfg: RunConfig, data, train_ds) -> tuple:
    """``(training dataset, steps per epoch)`` as :func:`train` hands them to ``model.fit``.

    Repeated, with one pass of steps per epoch (or ``train.steps_per_epoch``),
    for every task: one iterator lives across the epochs, so the next epoch's
    shuffle buffer and first batches are prepared while this epoch ends and
    validates, instead of stalling the first step of every epoch, and no
    iterator is freed between epochs. The tuner's trials feed ``fit`` the same
    way, so that a trial of a config reproduces ``kerasflow train`` of it (the
    order of examples and augmentation draws depends on how the dataset is
    iterated).
    """
    return train_ds.repeat(), steps_per_epoch(cfg, data)


def fit_model(model, cfg: RunConfig, data, callbacks, initial_epoch=0):
    """``model.fit`` as every kerasflow training runs it (train and tuner trials, every task).

    Reads the task's training data (:meth:`kerasflow.tasks.base.Task.training_data`);
    feeds :func:`fit_input`'s dataset and steps. Returns the History.
    """
    task = tasks.get(cfg.experiment.task)
    train_ds, class_weight = task.weighted_training(
        cfg.train.class_weight, data, data.dataset("train")
    )
    val_ds = data.dataset("validation", training=False) if data.size("validation") else None
    fit_ds, steps = fit_input(cfg, data, train_ds)
    with quiet_input_warnings():  # here too for the tuner's trials
        return model.fit(
            fit_ds,
            class_weight=class_weight,
            validation_data=val_ds,
            epochs=cfg.train.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=_verbosity(cfg.train.verbose),
        )


def build_callbacks(
    cfg: RunConfig, tracker: RunTracker, state: RunState, work: Path, data
) -> tuple[list[keras.callbacks.Callback], Path, str, int]:
    """The callbacks every run's fit uses, in the order that makes resuming exact.

    The task's epoch metrics come first (they add to the logs that MLflow
    logging, the checkpoint and early stopping read).

    Returns:
        (callbacks, best checkpoint path, checkpoint monitor, epoch to resume from)
    """
    task = tasks.get(cfg.experiment.task)
    split = evaluation_split(data)
    has_val = split == "validation"
    ck_monitor, ck_mode = monitor_for(cfg, cfg.train.checkpoint, has_val)
    best_path = work / "best.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(best_path),
        monitor=ck_monitor,
        mode=ck_mode,
        save_best_only=True,
        save_weights_only=True,
        initial_value_threshold=state.data.get("best") if state.unfinished else None,
    )
    # With EMA the averaged weights are swapped in for validation and the checkpoint,
    # so the best checkpoint (what is evaluated and registered) holds averaged weights.
    ema_swap = ema.swap_callbacks(cfg.compile)
    callbacks: list[keras.callbacks.Callback] = [
        signals.StopCheck(),  # a Ctrl-C or SIGTERM whose first raise was lost stops here
        keras.callbacks.TerminateOnNaN(),
        *ema_swap,
        *task.epoch_callbacks(data, split),
        *robustness.epoch_callbacks(cfg, data, split),  # evaluate.epoch_metrics
        MlflowCallback(tracker) if tracker.enabled else keras.callbacks.Callback(),
        checkpoint,
        _BestTracker(checkpoint, state),
        *early_stopping(cfg, has_val),
    ]
    backup_dir = work / "backup"
    initial_epoch = 0
    if cfg.train.resume:
        meta = backup_dir / "training_metadata.json"
        if meta.is_file():
            initial_epoch = int(json.loads(meta.read_text()).get("epoch", 0))
            log.info("resuming from epoch %d (backup in %s)", initial_epoch, backup_dir)
        # Last, so that everything above has finished an epoch before it counts as done.
        # Kept after fit: train() removes it once the trained weights are saved.
        callbacks.append(ema.backup_and_restore(str(backup_dir), callbacks))
    return callbacks, best_path, ck_monitor, initial_epoch


def restore_best(model: keras.Model, best_path: Path, monitor: str) -> None:
    """Load the best checkpoint's weights (the last epoch's stay if none was written)."""
    if best_path.is_file():
        model.load_weights(str(best_path))
    else:
        log.warning(
            "no best checkpoint was written (monitor %s never improved); using last weights",
            monitor,
        )


def finish_run(
    cfg: RunConfig,
    model: keras.Model,
    data,
    tracker: RunTracker,
    out: Path,
    *,
    history: dict[str, dict[int, float]] | None = None,
    work: Path | None = None,
    initial_epoch: int = 0,
    register_tags: dict[str, str] | None = None,
    state: RunState | None = None,
) -> TrainResult:
    """The end of every run (``train()`` and a search's best trial), for every task.

    Takes the trained model's contract from the task, evaluates the test split
    through the task (report, figures, HTML page, explanations), logs the test
    metrics, the contract (``contract.json``, read back by export, serve and
    evaluate) and every file in ``out``, logs and registers the model, and
    exports it when the config has an ``export:`` section. The champion alias
    moves only when the model beats the champion and its test score is clearly
    above chance (:meth:`~kerasflow.tasks.base.Task.beats_chance`); a model at
    chance is registered, tagged ``kerasflow.not_champion`` with the reason, and
    a warning is logged.

    Args:
        data: the task's training data (what ``fit`` read).
        out: the folder the report files go to (logged to the run).
        register_tags: extra tags of the registered model version.
        state: where the steps already done are recorded (``train()``'s ``state.json``):
            a re-run after a failure part-way does not log the test metrics or the
            model again, nor register twice.

    Raises:
        TrackingError: the store cannot be written (full disk, read-only store); one line
            naming the store and what was being written.
    """
    state = state if state is not None else RunState(None)
    signals.check()  # a stop asked for during the last epoch is not registered
    try:
        return _finish(
            cfg, model, data, tracker, out, history, work, initial_epoch, register_tags, state
        )
    except STORE_ERRORS as exc:
        raise store_error(
            exc, tracker.uri, f"finishing MLflow run {tracker.run_id}", tracker.artifact_uri
        ) from exc


def _finish(
    cfg, model, data, tracker, out, history, work, initial_epoch, register_tags, state
) -> TrainResult:
    task = tasks.get(cfg.experiment.task)
    out.mkdir(parents=True, exist_ok=True)
    # The model carries its contract: the task's part plus what it expects of an image.
    contract = {**task.contract(model, data), "preprocessing": cfg.data.preprocessing()}
    test_split = "test" if data.size("test") else evaluation_split(data)
    report = evaluation.evaluate_split(
        model, data, test_split, task, contract, out_dir=out, run_id=tracker.run_id
    )
    report["loss"] = float(
        model.evaluate(data.dataset(test_split, training=False), verbose=0, return_dict=True)[
            "loss"
        ]
    )
    robustness.add_robustness(model, data, report, out, task, contract, cfg.evaluate)
    evaluation.add_run_explanations(model, data, report, out, task, cfg.train, tracker.run_id)
    test_metrics = {**task.scalar_metrics(report), **robustness.scalar_metrics(report)}
    if not state.done("test_metrics"):
        tracker.log_metrics(test_metrics)
        state.mark("test_metrics")
    # The model carries its contract: export, serve and evaluate read it from the run.
    tracker.log_dict(contract, model_registry.CONTRACT_FILE)
    chance = task.beats_chance(report)
    if not chance.passed:
        log.warning("this model is not better than chance: %s", chance.reason)
        tracker.set_tags({model_registry.NOT_CHAMPION_TAG: chance.reason})
    artifacts = sorted(p.name for p in out.iterdir())
    for path in sorted(out.iterdir()):
        tracker.log_artifact(path)
    model_uri = registered = None
    if tracker.enabled and cfg.tracking.log_model:
        example = next(iter(data.dataset(test_split, training=False)))[0].numpy()[:2]
        # A search re-run after it ended must not register its best model twice.
        existing = mlflow_runs.run_tags(tracker.run_id, tracker.uri).get(
            "kerasflow.registered_version"
        ) or (  # registered, then killed before the tag was set
            cfg.tracking.register_model
            and mlflow_runs.registered_versions(
                tracker.run_id, cfg.registered_model_name, tracker.uri
            )
        )
        if state.done("model"):
            model_uri = state.data["model_uri"]
        else:
            model_uri = tracker.log_keras_model(model, example)
            state.mark("model", model_uri=model_uri)
        if cfg.tracking.register_model and not existing and not state.done("registered"):
            metric, mode = task.champion_metric(cfg.tracking)
            registered = model_registry.register(
                model_uri,
                cfg.registered_model_name,
                tracker.run_id,
                metric=metric,
                mode=mode,
                uri=tracker.uri,
                tags={
                    **(register_tags or {}),
                    model_registry.CONTRACT_TAG: (
                        f"runs:/{tracker.run_id}/{model_registry.CONTRACT_FILE}"
                    ),
                },
                gate=chance,
            )
            tracker.set_tags({"kerasflow.registered_version": registered.version})
            state.mark("registered")
            annotate_version(
                registered.name,
                registered.version,
                run_id=tracker.run_id,
                task=task.name,
                model=cfg.model.name,
                source=cfg.data.source,
                metrics=test_metrics,
                champion_metric=metric,
                uri=tracker.uri,
            )
    export_after_training(cfg, model, contract, tracker, registered, work or out.parent)
    export_after_run(cfg, model, contract, tracker, registered, work or out.parent)
    return TrainResult(
        model=model,
        history=history or {},
        test_metrics=test_metrics,
        report=report,
        run_id=tracker.run_id,
        model_uri=model_uri,
        registered=registered,
        work_dir=work or out.parent,
        config=cfg,
        initial_epoch=initial_epoch,
        artifacts=artifacts,
    )


def _build(cfg: RunConfig, task, prepared) -> tuple[keras.Model, Any]:
    """The compiled model and the task's training data, built before any MLflow run exists.

    A model parameter or a schedule the config cannot have fails here, so a
    config mistake never leaves a FAILED run behind.
    """
    dist = distribute.setup(cfg.train)  # cached: the strategy train() set up
    # Again here, right before the weights are drawn, so that nothing done since
    # train() started (data preparation) changes them.
    set_seeds(cfg)
    with dist.scope():
        model = build_compiled_model(cfg, prepared, distribute.scaled_compile_config(cfg, dist))
    return model, task.training_data(prepared, model)


def _train(
    cfg: RunConfig, model, data, prepared, tracker: RunTracker, state: RunState, work: Path
) -> TrainResult:
    dist = distribute.setup(cfg.train)  # cached: the strategy train() set up
    # data.batch_size is the global batch, split over the replicas.
    steps = steps_per_epoch(cfg, prepared)
    out = work / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    if not tracker.resumed:
        log_run_inputs(cfg, prepared, model, tracker)
        transfer.log_transfer(model, tracker)

    trained = work / TRAINED_WEIGHTS
    if state.data.get("fit_done") and trained.is_file():  # a re-run after a failed finish
        log.info("training already finished in this run; finishing it (%s)", trained)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # the file holds its state too
        model.load_weights(str(trained))
        history = _logged_history(tracker)
        initial_epoch = state.data.get("initial_epoch", 0)
    else:
        trained_model = _fit(cfg, model, prepared, data, tracker, state, work, steps, dist, trained)
        if isinstance(trained_model, TrainResult):  # a multi-worker worker: it only trains
            return trained_model
        model, history, initial_epoch = trained_model
        plots.training_curves_png(history, out / "training_curves.png")
    return finish_run(
        cfg,
        model,
        data,
        tracker,
        out,
        history=history,
        work=work,
        initial_epoch=initial_epoch,
        state=state,
    )


def _fit(cfg: RunConfig, model, prepared, data, tracker, state, work: Path, steps, dist, trained):
    """Fit (resuming from the backup), keep the best epoch, save ``trained`` and mark ``fit_done``.

    Returns ``(model, history, initial_epoch)``, or a multi-worker worker's
    :class:`TrainResult` (workers only train; the chief evaluates, logs and registers).
    """
    callbacks, best_path, ck_monitor, initial_epoch = build_callbacks(
        cfg, tracker, state, work, data
    )
    if dist.custom_loop:  # multi-worker: Keras' fit fails there (see training/custom_loop.py)
        loop = custom_loop.fit(model, data, cfg, dist, callbacks, work, steps)
        fit_history, initial_epoch, model = loop, loop.initial_epoch, loop.model
        if not dist.is_chief:
            backup.discard(work / "backup")
            return TrainResult(model, {}, {}, {}, None, None, None, work, cfg, initial_epoch)
    elif cfg.train.finetune is not None:
        fit_history = finetune.fit_staged(
            model,
            cfg,
            prepared,
            data,
            callbacks,
            state,
            work,
            dist.scope,
            fit_model,
            tasks.get(cfg.experiment.task),
        )
    else:
        fit_history = fit_model(model, cfg, data, callbacks)
        if dist.num_replicas > 1:
            # Evaluate and export a single-device copy: a final batch smaller than the
            # number of replicas leaves one replica an empty batch, which TensorFlow's CPU
            # convolutions reject under MirroredStrategy (measured: 9 test images, batch 8).
            model = custom_loop.local_copy(model, data, cfg, dist)
    restore_best(model, best_path, ck_monitor)
    # Saved before the backup goes: from here on a re-run finishes this model, never retrains.
    tmp = trained.with_name("trained.tmp.weights.h5")
    model.save_weights(str(tmp))
    os.replace(tmp, trained)
    state.update(fit_done=True, initial_epoch=initial_epoch)
    backup.discard(work / "backup")
    return model, _history(tracker, fit_history, initial_epoch), initial_epoch


def _logged_history(tracker: RunTracker) -> dict[str, dict[int, float]]:
    """The per-epoch metrics already in the run (what a re-run that skips fit reports)."""
    keys = [k for k in tracker.metrics() if not k.startswith("test_") and k != "data_skipped_files"]
    return {k: tracker.metric_history(k) for k in keys}
