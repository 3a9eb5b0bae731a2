"""Metrics by name. ``get_metric(name, num_classes)`` raises ConfigError listing valid names."""

from __future__ import annotations

import keras

from kerasflow.errors import ConfigError

METRICS = {
    "accuracy": lambda num_classes, **kw: keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
}


def get_metric(name: str, num_classes: int, **kwargs):
    if name not in METRICS:
        raise ConfigError(f"Unknown metric {name!r} in compile.metrics. Choose one of: {', '.join(sorted(METRICS))}.")
    return METRICS[name](num_classes, **kwargs)
