"""Compile a model from the ``compile:`` section: the optimizer and schedule; the task picks loss and metrics."""

from __future__ import annotations

import contextlib
import math

import keras

from kerasflow import tasks
from kerasflow.errors import ConfigError
from kerasflow.models.schedules import EpochSchedule

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")


def build_schedule(compile_config, steps_per_epoch: int, epochs: int):
    """The learning rate: a float for a constant rate without warmup, else an :class:`EpochSchedule`."""
    sched = compile_config.schedule
    lr = compile_config.optimizer.learning_rate
    if sched.name == "constant" and not sched.warmup_epochs:
        return lr
    if sched.warmup_epochs >= epochs and sched.name != "constant":
        raise ConfigError(
            f"compile.schedule.warmup_epochs ({sched.warmup_epochs}) must be smaller than "
            f"train.epochs ({epochs})."
        )
    return EpochSchedule(
        kind=sched.name,
        base_lr=lr,
        total_steps=max(1, steps_per_epoch * epochs),
        steps_per_epoch=max(1, steps_per_epoch),
        warmup_epochs=sched.warmup_epochs,
        decay_rate=sched.decay_rate,
        step_epochs=sched.step_epochs,
        decay_epochs=sched.decay_epochs,
        min_lr_ratio=sched.min_lr_ratio,
    )


def build_optimizer(
    compile_config, steps_per_epoch: int, epochs: int, accumulation: int = 1
) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name with its schedule, weight decay, clipping, EMA and accumulation.

    Args:
        accumulation: ``train.gradient_accumulation_steps`` (1: apply every batch).
    """
    opt = compile_config.optimizer
    lr = build_schedule(compile_config, steps_per_epoch, epochs)
    common = {
        "learning_rate": lr,
        "clipnorm": opt.clipnorm,
        "clipvalue": opt.clipvalue,
        "use_ema": opt.ema,
        "ema_momentum": opt.ema_momentum,
        "gradient_accumulation_steps": accumulation if accumulation > 1 else None,
    }
    wd = opt.weight_decay or None
    if opt.name == "sgd":
        return keras.optimizers.SGD(weight_decay=wd, **common)
    if opt.name in ("momentum", "nesterov"):
        return keras.optimizers.SGD(
            momentum=opt.momentum, nesterov=opt.name == "nesterov", weight_decay=wd, **common
        )
    if opt.name == "adam":
        return keras.optimizers.Adam(weight_decay=wd, **common)
    if opt.name == "adamw":
        return keras.optimizers.AdamW(weight_decay=opt.weight_decay or 0.004, **common)
    if opt.name == "rmsprop":
        return keras.optimizers.RMSprop(momentum=0.0, weight_decay=wd, **common)
    raise ConfigError(
        f"Unknown compile.optimizer.name {opt.name!r}. Choose one of: {', '.join(OPTIMIZERS)}."
    )


def compile_model(
    model: keras.Model,
    task,
    compile_config,
    steps_per_epoch: int,
    epochs: int,
    num_classes: int,
    train_config=None,
):
    """Compile ``model`` in place: the config's optimizer, the task's loss and metrics.

    Keywords only: Keras 3's third positional argument is ``loss_weights``.
    ``train_config`` gives ``jit_compile`` and ``gradient_accumulation_steps``.
    A model built under ``mixed_float16`` gets Keras' loss-scale optimizer from
    ``compile`` itself.
    """
    accumulation = train_config.gradient_accumulation_steps if train_config else 1
    jit = train_config.jit_compile if train_config else "auto"
    model.compile(
        optimizer=build_optimizer(compile_config, steps_per_epoch, epochs, accumulation),
        loss=task.training_loss(compile_config, num_classes, train_config),
        metrics=task.metric_objects(compile_config, num_classes),
        jit_compile=jit,
    )
    return model


@contextlib.contextmanager
def precision_scope(precision: str):
    """Build models under the Keras dtype policy ``precision`` (restored afterwards).

    Layers take the policy when they are created; every model's last layer is
    a float32 activation (``models.layers.probabilities``), so outputs, losses
    and the exported SavedModel stay float32.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def steps_per_epoch(cfg, prepared) -> int:
    """Optimizer steps per epoch: ``train.steps_per_epoch``, else one pass over the train split."""
    return cfg.train.steps_per_epoch or max(
        1, math.ceil(prepared.size("train") / cfg.data.batch_size)
    )


def build_compiled_model(cfg, prepared, compile_config=None) -> keras.Model:
    """A fresh model of the run config ``cfg`` for ``prepared`` data, compiled.

    The one build-and-compile step of ``train()``, the tuner's trials and the
    distributed loop's local copy, for every task: the task builds its model
    (head included) and chooses its loss and metrics.

    Args:
        compile_config: the ``compile:`` section to use (default ``cfg.compile``;
            ``train()`` passes the one scaled for its replicas).
    """
    from kerasflow.training import transfer

    task = tasks.get(cfg.experiment.task)
    compile_config = compile_config or cfg.compile
    with precision_scope(cfg.train.precision):
        model = task.build_model(cfg, prepared)
    transfer.apply_pretrained(model, cfg, prepared)
    steps = steps_per_epoch(cfg, prepared)
    if cfg.train.finetune is not None:  # train() recompiles per phase; its warmup is phase 2's
        schedule = compile_config.schedule.model_copy(
            update={"warmup_epochs": cfg.train.finetune.warmup_epochs}
        )
        compile_config = compile_config.model_copy(update={"schedule": schedule})
    model = compile_model(
        model, task, compile_config, steps, cfg.train.epochs, prepared.num_classes, cfg.train
    )
    if cfg.train.adversarial is not None:
        from kerasflow.training import adversarial

        adversarial.install(model, task, cfg.train.adversarial)
    return model
