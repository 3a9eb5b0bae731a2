"""Losses by name. ``get_loss(name, **kwargs)`` raises ConfigError listing valid names."""

from __future__ import annotations

import keras

from kerasflow.errors import ConfigError

LOSSES = {
    "sparse_categorical_crossentropy": lambda **kw: keras.losses.SparseCategoricalCrossentropy(**kw),
    "categorical_crossentropy": lambda **kw: keras.losses.CategoricalCrossentropy(**kw),
    "binary_crossentropy": lambda **kw: keras.losses.BinaryCrossentropy(**kw),
}


def get_loss(name: str, **kwargs):
    if name not in LOSSES:
        raise ConfigError(f"Unknown compile.loss.name {name!r}. Choose one of: {', '.join(sorted(LOSSES))}.")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"Bad options for loss {name!r}: {exc}. Received: {kwargs}") from exc
