"""``train.finetune``: staged fine-tuning of a pretrained model in one run.

Phase 1 (epochs ``0 .. freeze_epochs``) trains only the layers that did not
come from ``model.pretrained``: the pretrained ones are set
``trainable=False``, which also runs their BatchNormalization in inference
mode (moving statistics untouched), as Keras' transfer-learning guide asks.
The new head trains at the configured learning rate, without schedule.

Phase 2 (the remaining epochs) unfreezes all pretrained layers or those of the
last K stages, recompiles with the learning rate multiplied by
``finetune.lr_factor`` and the configured schedule over the remaining epochs
after ``finetune.warmup_epochs`` of warmup.

One MLflow run, one epoch axis. The phase is part of the resume state:
phase 1's backup is kept when it ends (``delete_checkpoint=False``), so a kill
at any point in phase 2 resumes phase 2, and ``state.json`` records the phase.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import keras

from kerasflow.errors import ConfigError
from kerasflow.training import ema, transfer
from kerasflow.training.compile import compile_model, steps_per_epoch

log = logging.getLogger(__name__)

_STAGE = re.compile(r"(?:stage|block|conv|layer|level)_?(\d+)")


def check(cfg) -> None:
    """Refuse a finetune section that cannot work, before anything trains."""
    ft = cfg.train.finetune
    if ft is None:
        return
    if not cfg.model.pretrained:
        raise ConfigError(
            "train.finetune freezes the layers that model.pretrained loads, but model.pretrained "
            "is not set. Set model.pretrained (a weights file, an MLflow model URI or imagenet) "
            "or remove train.finetune."
        )
    phase2 = cfg.train.epochs - ft.freeze_epochs
    if ft.warmup_epochs and ft.warmup_epochs >= phase2 and cfg.compile.schedule.name != "constant":
        raise ConfigError(
            f"train.finetune.warmup_epochs ({ft.warmup_epochs}) must be smaller than the "
            f"epochs of phase 2 (train.epochs - freeze_epochs = {phase2})."
        )


def stage_of(name: str) -> str | None:
    """The stage a layer belongs to, from its name (``block3``, ``conv4``, ``stage2``)."""
    match = _STAGE.search(name)
    return match.group(0) if match else None


def unfrozen_layers(names: list[str], unfreeze) -> list[str]:
    """The pretrained layers phase 2 trains: all, or those of the last K stages.

    A layer whose name shows no stage joins the stage before it (a stem joins none).
    """
    if unfreeze == "all":
        return list(names)
    order: list[str] = []
    stage_by_layer: dict[str, str | None] = {}
    current = None
    for name in names:
        current = stage_of(name) or current
        stage_by_layer[name] = current
        if current is not None and current not in order:
            order.append(current)
    if not order:
        raise ConfigError(
            "train.finetune.unfreeze.last_stages: the pretrained layers' names show no stages "
            f"(block<N>, stage<N>, conv<N>, ...). Use unfreeze: all. Layers: {names[:5]}..."
        )
    keep = set(order[-unfreeze.last_stages :])
    return [n for n in names if stage_by_layer[n] in keep]


def pretrained_layers(model) -> list:
    """The layers phase 1 freezes: those loaded from ``model.pretrained``, less the head.

    The head (:func:`~kerasflow.models.pretrained.head_layers`) always trains in
    phase 1, even where the source had one of the same shape.
    """
    from kerasflow.models.pretrained import head_layers, weighted_layers

    report = transfer.report_of(model)
    frozen = (set(report.loaded) if report else set()) - set(head_layers(model))
    return [layer for layer in weighted_layers(model) if layer.name in frozen]


def set_phase(model, cfg, phase: int) -> list[str]:
    """Freeze (phase 1) or unfreeze (phase 2) the pretrained layers; returns those trained."""
    layers = pretrained_layers(model)
    if phase == 1:
        for layer in layers:
            layer.trainable = False
        return []
    names = unfrozen_layers([layer.name for layer in layers], cfg.train.finetune.unfreeze)
    wanted = set(names)
    for layer in layers:
        layer.trainable = layer.name in wanted
    return names


def phase_compile_config(cfg, compile_config, phase: int):
    """The ``compile:`` section of a phase: constant rate, or scaled rate with its own warmup."""
    ft = cfg.train.finetune
    opt = compile_config.optimizer
    if phase == 1:
        schedule = compile_config.schedule.model_copy(
            update={"name": "constant", "warmup_epochs": 0}
        )
        return compile_config.model_copy(update={"schedule": schedule})
    optimizer = opt.model_copy(update={"learning_rate": opt.learning_rate * ft.lr_factor})
    schedule = compile_config.schedule.model_copy(update={"warmup_epochs": ft.warmup_epochs})
    return compile_config.model_copy(update={"optimizer": optimizer, "schedule": schedule})


def compile_phase(model, cfg, prepared, compile_config, phase: int, task) -> list[str]:
    """Set the phase's trainable layers and compile for it; returns the unfrozen layer names."""
    names = set_phase(model, cfg, phase)
    epochs = (
        cfg.train.finetune.freeze_epochs
        if phase == 1
        else cfg.train.epochs - cfg.train.finetune.freeze_epochs
    )
    compile_model(
        model,
        task,
        phase_compile_config(cfg, compile_config, phase),
        steps_per_epoch(cfg, prepared),
        epochs,
        prepared.num_classes,
        cfg.train,
    )
    return names


class _History:
    """The two phases' ``History`` objects as one (what ``_history`` reads)."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}

    def add(self, history) -> None:
        for key, values in history.history.items():
            self.history.setdefault(key, []).extend(values)


def backup_epoch(backup_dir: Path) -> int:
    meta = backup_dir / "training_metadata.json"
    if meta.is_file():
        return int(json.loads(meta.read_text()).get("epoch", 0))
    return 0


def fit_staged(model, cfg, prepared, data, callbacks, state, work: Path, scope, fit_model, task):
    """Run both phases with ``callbacks`` (as ``build_callbacks`` made them); returns the history.

    Args:
        scope: a function returning the strategy scope (recompiling creates optimizer variables).
        fit_model: ``training.fit.fit_model``.
    """
    ft = cfg.train.finetune
    compile_config = cfg.compile
    history = _History()
    backup_dir = work / "backup"
    resumed_phase2 = cfg.train.resume and backup_epoch(backup_dir) >= ft.freeze_epochs
    if not resumed_phase2:
        with scope():
            compile_phase(model, cfg, prepared, compile_config, 1, task)
        state.update(finetune_phase=1)
        frozen = [layer.name for layer in pretrained_layers(model)]
        log.info("finetune phase 1: %d pretrained layers frozen", len(frozen))
        phase1 = [
            c
            for c in callbacks
            if not isinstance(c, keras.callbacks.EarlyStopping | keras.callbacks.BackupAndRestore)
        ]
        if cfg.train.resume:  # keep the backup when phase 1 ends: phase 2 resumes from it
            phase1.append(ema.backup_and_restore(str(backup_dir), phase1))
        short = cfg.model_copy(
            update={"train": cfg.train.model_copy(update={"epochs": ft.freeze_epochs})}
        )
        history.add(fit_model(model, short, data, phase1))
    with scope():
        names = compile_phase(model, cfg, prepared, compile_config, 2, task)
    state.update(finetune_phase=2)
    log.info(
        "finetune phase 2 from epoch %d: %d pretrained layers unfrozen, learning rate x %g",
        ft.freeze_epochs,
        len(names),
        ft.lr_factor,
    )
    history.add(fit_model(model, cfg, data, callbacks, initial_epoch=ft.freeze_epochs))
    return history
