"""Learning-rate schedules by name, as one serializable Keras schedule.

All schedules are written in epochs in the config and turned into steps
here, so changing the batch size keeps the shape of the schedule.
"""

from __future__ import annotations

import math

import keras
from keras import ops

SCHEDULES = ("constant", "cosine", "step", "exponential", "one_cycle")


@keras.saving.register_keras_serializable(package="kerasflow")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup followed by one of: constant, cosine, step, exponential, one_cycle.

    Args:
        kind: one of :data:`SCHEDULES`.
        base_lr: peak learning rate (reached at the end of warmup).
        total_steps: steps of the whole run.
        steps_per_epoch: steps of one epoch (epoch-valued settings are scaled by it).
        warmup_epochs: linear warmup from 0 to ``base_lr``.
        decay_rate: factor for step and exponential decay.
        step_epochs: epochs at which step decay multiplies the rate by ``decay_rate``.
        decay_epochs: epochs per factor of ``decay_rate`` for exponential decay.
        min_lr_ratio: floor of cosine decay as a fraction of ``base_lr``.
    """

    def __init__(
        self,
        kind: str,
        base_lr: float,
        total_steps: int,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        decay_rate: float = 0.1,
        step_epochs=(),
        decay_epochs: float = 1.0,
        min_lr_ratio: float = 0.0,
    ):
        if kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {SCHEDULES}. Received: kind={kind!r}")
        if total_steps < 1 or steps_per_epoch < 1:
            raise ValueError(
                "total_steps and steps_per_epoch must be >= 1. "
                f"Received: total_steps={total_steps}, steps_per_epoch={steps_per_epoch}"
            )
        self.kind = kind
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.decay_rate = float(decay_rate)
        self.step_epochs = [float(e) for e in step_epochs]
        self.decay_epochs = float(decay_epochs)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        spe = float(self.steps_per_epoch)
        warmup = self.warmup_epochs * spe
        total = float(self.total_steps)
        base = self.base_lr
        if self.kind == "one_cycle":
            # Up for 30% of the run (or the warmup), then cosine down to base/1e4.
            peak = warmup if warmup > 0 else 0.3 * total
            up = base / 25.0 + (base - base / 25.0) * step / max(peak, 1.0)
            frac = ops.clip((step - peak) / max(total - peak, 1.0), 0.0, 1.0)
            down = base / 1e4 + (base - base / 1e4) * 0.5 * (1.0 + ops.cos(math.pi * frac))
            return ops.where(step < peak, up, down)
        after = step - warmup
        if self.kind == "constant":
            rate = ops.convert_to_tensor(base, "float32")
        elif self.kind == "cosine":
            frac = ops.clip(after / max(total - warmup, 1.0), 0.0, 1.0)
            floor = base * self.min_lr_ratio
            rate = floor + (base - floor) * 0.5 * (1.0 + ops.cos(math.pi * frac))
        elif self.kind == "step":
            epoch = step / spe
            drops = (
                sum(ops.cast(epoch >= e, "float32") for e in self.step_epochs)
                if self.step_epochs
                else 0.0
            )
            rate = base * ops.power(self.decay_rate, drops)
        else:  # exponential
            rate = base * ops.power(
                self.decay_rate, ops.maximum(after, 0.0) / (self.decay_epochs * spe)
            )
        if warmup > 0:
            rate = ops.where(step < warmup, base * (step + 1.0) / warmup, rate)
        return rate

    def get_config(self):
        return {
            "kind": self.kind,
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_epochs": self.warmup_epochs,
            "decay_rate": self.decay_rate,
            "step_epochs": list(self.step_epochs),
            "decay_epochs": self.decay_epochs,
            "min_lr_ratio": self.min_lr_ratio,
        }
