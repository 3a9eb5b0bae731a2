"""Tasks: what differs between classification, multi-label, segmentation and detection.

:func:`get` looks a task up by ``experiment.task``; see :class:`kerasflow.tasks.base.Task`.

Example:
    >>> from kerasflow import tasks
    >>> tasks.get("multilabel").auto_metrics
"""

from __future__ import annotations

import importlib

from kerasflow.errors import ConfigError
from kerasflow.tasks.base import Task

# Task name -> "module:class"; a task is imported on first use.
_TASKS = {
    "classification": "kerasflow.tasks.classification:ClassificationTask",
    "multilabel": "kerasflow.tasks.multilabel:MultilabelTask",
    "segmentation": "kerasflow.tasks.segmentation:SegmentationTask",
    "detection": "kerasflow.tasks.detection:DetectionTask",
}
_LOADED: dict[str, Task] = {}


def names() -> list[str]:
    """The task names ``experiment.task`` accepts."""
    return list(_TASKS)


def get(name: str) -> Task:
    """The task object of ``name`` (one shared instance per task).

    Raises:
        ConfigError: unknown task name.
    """
    if name not in _TASKS:
        raise ConfigError(f"Unknown task {name!r}. Choose one of: {', '.join(_TASKS)}.")
    if name not in _LOADED:
        module, cls = _TASKS[name].split(":")
        _LOADED[name] = getattr(importlib.import_module(module), cls)()
    return _LOADED[name]


__all__ = ["Task", "get", "names"]
