"""Tiny tuning problems: 8x8 digits, a 4-filter CNN, a few steps per epoch, files under one root."""

from __future__ import annotations

import copy

import yaml

BASE = {
    "experiment": {"name": "tiny", "seed": 1},
    "data": {
        "source": "digits",
        "image_size": [8, 8],
        "batch_size": 64,
        "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "stratify": True},
        "augment": {},
    },
    "model": {
        "name": "simple_cnn",
        "params": {"width": 4, "depth": 1, "dense_units": 16, "dropout": 0.0, "bn_momentum": 0.9},
    },
    "compile": {"optimizer": {"name": "adam", "learning_rate": 0.01}},
    "train": {
        "epochs": 2,
        "steps_per_epoch": 3,
        "verbose": 0,
        "checkpoint": {"monitor": "val_accuracy"},
        "early_stopping": {"enabled": False},
        "resume": False,
    },
}


def tiny_config(root, uri, name="tiny", tune=None, **sections) -> dict:
    """A tiny run config (raw data) whose files all stay under ``root``."""
    data = copy.deepcopy(BASE)
    data["experiment"].update(name=name, work_dir=str(root / "runs"))
    data["tracking"] = {"uri": uri, "registered_model": f"{name}-model"}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    data["tune"] = {"directory": str(root / "tuning"), **(tune or {})}
    return data


def write_config(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)
