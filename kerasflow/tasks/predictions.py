"""A task's outputs as JSON, from plain arrays: shared by every serving path, no TensorFlow.

The SavedModel signatures, the LiteRT and ONNX artefacts all answer through
these functions (a task's :meth:`~kerasflow.tasks.base.Task.json_predictions`
calls its own), so ``kerasflow predict`` and ``kerasflow serve`` of a portable
artefact need neither TensorFlow nor the task's report code. The outputs are
arrays (NumPy, or anything ``np.asarray`` takes, e.g. eager tensors).

Example:
    >>> json_predictions("classification", {"probabilities": p, "class_id": ids}, contract)
    [{'class_id': 7, 'class_name': '7', 'probabilities': [...]}]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kerasflow.errors import ServingError


def classification(outputs, contract: dict) -> list[dict]:
    """``class_id``, ``class_name`` and ``probabilities`` per image."""
    probs = np.asarray(outputs["probabilities"], np.float32)
    ids = np.asarray(outputs["class_id"]) if "class_id" in outputs else probs.argmax(-1)
    names = contract["class_names"]
    return [
        {"class_id": int(i), "class_name": names[int(i)], "probabilities": p.tolist()}
        for i, p in zip(ids, probs, strict=True)
    ]


def multilabel(outputs, contract: dict) -> list[dict]:
    """The label names over their thresholds and every label's probability, per image."""
    probs = np.asarray(outputs["probabilities"], np.float32)
    if "predicted" in outputs:
        predicted = np.asarray(outputs["predicted"]).astype(bool)
    else:
        predicted = probs >= np.asarray(contract["thresholds"], np.float32)
    names = contract["class_names"]
    return [
        {
            "labels": [names[i] for i in np.flatnonzero(row)],
            "probabilities": {n: float(p) for n, p in zip(names, ps, strict=True)},
        }
        for row, ps in zip(predicted, probs, strict=True)
    ]


def segmentation(outputs, contract: dict) -> list[dict]:
    """The class map (one class id per pixel of the model's input size) per image."""
    if "class_map" in outputs:
        maps = np.asarray(outputs["class_map"])
    else:
        maps = np.asarray(outputs["probabilities"]).argmax(-1)
    return [{"class_map": m.tolist()} for m in maps]


_BY_TASK: dict[str, Callable[[dict, dict], list[dict]]] = {
    "classification": classification,
    "multilabel": multilabel,
    "segmentation": segmentation,
}


def json_predictions(task: str, outputs, contract: dict) -> list[dict]:
    """One JSON-ready dict per image of ``task``'s outputs.

    Raises:
        ServingError: the task has no array-only predictions (detection's boxes come
            from its SavedModel signature).
    """
    if task not in _BY_TASK:
        raise ServingError(
            f"Task {task!r} has no portable predictions; portable artefacts exist for "
            f"{sorted(_BY_TASK)}. Serve its SavedModel export instead."
        )
    return _BY_TASK[task](outputs, contract)


class TaskOutputs:
    """What serving needs of a task from arrays alone: its ``name`` and ``json_predictions``.

    Stands in for the :class:`~kerasflow.tasks.base.Task` where TensorFlow must not be
    imported (serving a LiteRT or ONNX artefact).
    """

    def __init__(self, name: str):
        if name not in _BY_TASK:
            json_predictions(name, {}, {})  # raises, naming the tasks that have them
        self.name = name

    def json_predictions(self, outputs, contract: dict) -> list[dict]:
        return _BY_TASK[self.name](outputs, contract)
