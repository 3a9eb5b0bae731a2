"""kerasflow's own training loop, for MultiWorkerMirroredStrategy.

``model.fit`` fails under MultiWorkerMirroredStrategy with TensorFlow 2.21 and
Keras 3.15: Keras' ``_maybe_symbolic_build`` tries to convert the distributed
first batch (``PerReplica``) to a tensor (keras-team/keras issue 20585). This
loop does what ``fit`` would: a ``tf.function`` step run on every replica with
``strategy.run``, gradients of ``tf.nn.compute_average_loss`` over the global
batch (the Keras optimizer all-reduces them), and metrics kept in Keras metric
objects whose variables are summed over all replicas when read.

It drives the same Keras callbacks as ``fit`` (MLflow logging, best checkpoint,
early stopping) once per epoch, except ``BackupAndRestore``: backups are
``tf.train.CheckpointManager`` checkpoints of the model, the optimizer and the
epoch, written by every worker after the callbacks (the chief into
``<work dir>/backup_multi_worker``, the others into their private folders) and
restored by every worker from the chief's folder. A restarted job therefore
resumes after the last finished epoch; the work dir must be on storage every
worker can read (as for Keras' ``BackupAndRestore``).

When a later Keras release fixes ``fit`` under MultiWorkerMirroredStrategy,
delete this module and let multi-worker runs take the ``fit`` path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasflow import tasks
from kerasflow.errors import WorkerLostError
from kerasflow.pipelines.sharding import sharded_dataset
from kerasflow.training.compile import build_compiled_model
from kerasflow.training.distribute import Distribution, scaled_compile_config

log = logging.getLogger(__name__)

BACKUP_DIR = "backup_multi_worker"


@dataclass
class LoopResult:
    """What :func:`fit` returns: the per-epoch logs, where it started, and a local copy of the model."""

    history: dict[str, list[float]] = field(default_factory=dict)
    initial_epoch: int = 0
    model: keras.Model | None = None


def _per_example(loss_fn, y_true, y_pred):
    """One loss value per example (pixel losses averaged inside each example)."""
    values = (
        loss_fn.call(y_true, y_pred)
        if isinstance(loss_fn, keras.losses.Loss)
        else loss_fn(y_true, y_pred)
    )
    values = tf.cast(values, tf.float32)
    if values.shape.rank and values.shape.rank > 1:
        values = tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)
    return values


_PEER_ERRORS = (
    tf.errors.DeadlineExceededError,
    tf.errors.UnavailableError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)


class _Steps:
    """The compiled per-replica train and test steps and their metrics."""

    def __init__(self, model: keras.Model, cfg, dist: Distribution, num_classes: int):
        strategy = dist.strategy
        self.model = model
        self.global_batch = cfg.data.batch_size
        with strategy.scope():
            task = tasks.get(cfg.experiment.task)
            self.loss_fn = task.loss(cfg.compile, num_classes)
            self.loss = keras.metrics.Mean(name="loss")
            self.metrics = task.metric_objects(cfg.compile, num_classes)
        self.strategy = strategy

        def train_replica(x, y):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                per_example = _per_example(self.loss_fn, y, pred)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            weights = model.trainable_weights
            grads = tape.gradient(loss, weights)
            model.optimizer.apply_gradients(zip(grads, weights, strict=True))
            self._update(per_example, y, pred)

        def test_replica(x, y):
            pred = model(x, training=False)
            self._update(_per_example(self.loss_fn, y, pred), y, pred)

        @tf.function
        def train_step(batch):
            strategy.run(train_replica, args=batch)

        @tf.function
        def test_step(batch):
            strategy.run(test_replica, args=batch)

        @tf.function
        def agree(flag):
            value = strategy.run(tf.identity, args=(flag,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

        self.train_step, self.test_step, self._agree = train_step, test_step, agree

    def _update(self, per_example, y, pred):
        self.loss.update_state(per_example)
        for metric in self.metrics:
            metric.update_state(y, pred)

    def reset(self):
        for metric in [self.loss, *self.metrics]:
            metric.reset_state()

    def results(self, prefix: str = "") -> dict[str, float]:
        # Reading a metric sums its variables over every replica of every worker.
        out = {f"{prefix}loss": float(self.loss.result())}
        for metric in self.metrics:
            out[f"{prefix}{metric.name}"] = float(metric.result())
        return out

    def agree(self, flag: bool) -> bool:
        """True on every worker when any worker says True (keeps the workers in step)."""
        return bool(self._agree(tf.constant(1.0 if flag else 0.0)) > 0)


def fit(
    model: keras.Model,
    prepared,
    cfg,
    dist: Distribution,
    callbacks: list[keras.callbacks.Callback],
    work: Path,
    steps_per_epoch: int,
) -> LoopResult:
    """Train ``model`` (built and compiled under ``dist.scope()``) for ``train.epochs``.

    Args:
        model: the model, built and compiled under the multi-worker strategy's scope.
        prepared: the split data (each worker reads its own shard).
        cfg: the run config; ``data.batch_size`` is the global batch.
        dist: from :func:`kerasflow.training.distribute.setup`.
        callbacks: the Keras callbacks ``fit`` would get; ``BackupAndRestore`` is
            replaced by this loop's checkpoints.
        work: this process's work dir (:meth:`Distribution.own_dir`).
        steps_per_epoch: optimizer steps per epoch (the same on every worker).

    Returns:
        The epoch logs, the epoch it resumed after, and the trained weights in
        a model built without the strategy (safe to evaluate and save on one process).

    Raises:
        WorkerLostError: a peer worker stopped answering (the job should be restarted).
    """
    try:
        return _fit(model, prepared, cfg, dist, callbacks, work, steps_per_epoch)
    except _PEER_ERRORS as exc:
        log.error("a peer worker stopped answering: %s", type(exc).__name__)
        shared = dist.shared_dir(work) / BACKUP_DIR
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise WorkerLostError(
            f"Multi-worker training stopped: a peer worker stopped answering "
            f"({type(exc).__name__}: {first}). Restart every worker of the job; it resumes "
            f"after the last saved epoch in {shared}."
        ) from exc


def _fit(model, prepared, cfg, dist, callbacks, work, steps_per_epoch) -> LoopResult:
    strategy = dist.strategy
    callbacks = [c for c in callbacks if not isinstance(c, keras.callbacks.BackupAndRestore)]
    backup = cfg.train.resume
    with strategy.scope():
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Build the optimizer's slots now, so that a restore fills them instead of deferring.
        model.optimizer.build(model.trainable_weights)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_var)
    own_backup = work / BACKUP_DIR
    shared_backup = dist.shared_dir(work) / BACKUP_DIR
    manager = tf.train.CheckpointManager(checkpoint, str(own_backup), max_to_keep=2)
    steps = _Steps(model, cfg, dist, prepared.num_classes)
    initial_epoch = 0
    latest = tf.train.latest_checkpoint(str(shared_backup)) if backup else None
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        initial_epoch = int(epoch_var.numpy())
        log.info("resuming after epoch %d from %s", initial_epoch, latest)

    def distributed(split: str, training: bool, repeat: bool):
        def fn(ctx: tf.distribute.InputContext):
            return sharded_dataset(
                prepared,
                split,
                ctx.num_input_pipelines,
                ctx.input_pipeline_id,
                ctx.get_per_replica_batch_size(cfg.data.batch_size),
                training=training,
                repeat=repeat,
            )

        return strategy.distribute_datasets_from_function(fn)

    dist.per_replica_batch(cfg.data.batch_size)  # a clear error before any data flows
    train_iter = iter(distributed("train", True, repeat=True))
    has_val = prepared.size("validation") > 0
    val_ds = distributed("validation", False, repeat=False) if has_val else None

    epochs = cfg.train.epochs
    history = keras.callbacks.History()
    cb = keras.callbacks.CallbackList(
        [*callbacks, history], model=model, epochs=epochs, steps=steps_per_epoch, verbose=0
    )
    model.stop_training = False
    cb.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        start = time.time()
        cb.on_epoch_begin(epoch)
        steps.reset()
        for _ in range(steps_per_epoch):
            steps.train_step(next(train_iter))
        logs = steps.results()
        if val_ds is not None:
            steps.reset()
            for batch in val_ds:
                steps.test_step(batch)
            logs.update(steps.results("val_"))
        log.info(
            "epoch %d/%d (%.1fs): %s",
            epoch + 1,
            epochs,
            time.time() - start,
            " ".join(f"{k}={v:.4f}" for k, v in logs.items()),
        )
        cb.on_epoch_end(epoch, logs)
        if not np.isfinite(logs["loss"]):  # TerminateOnNaN's job (it only looks at batches)
            log.warning("loss is %s after epoch %d: stopping", logs["loss"], epoch + 1)
            model.stop_training = True
        # After the callbacks, as with fit's BackupAndRestore: an epoch counts as done
        # only once its metrics are logged and its best checkpoint is written.
        epoch_var.assign(epoch + 1)
        if backup:
            manager.save(checkpoint_number=epoch + 1)
        if steps.agree(bool(model.stop_training)):
            break
    cb.on_train_end()
    return LoopResult(
        history=dict(history.history),
        initial_epoch=initial_epoch,
        model=local_copy(model, prepared, cfg, dist),
    )


def local_copy(model: keras.Model, prepared, cfg, dist: Distribution):
    """The same weights in a model built and compiled outside the strategy.

    Evaluating or saving the distributed model would run collectives that need
    every worker; the chief evaluates, logs and registers on its own.
    """
    local = build_compiled_model(cfg, prepared, scaled_compile_config(cfg, dist))
    local.set_weights([np.asarray(w) for w in model.get_weights()])
    return local
