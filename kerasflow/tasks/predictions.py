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


# combined NMS's defaults of a detector (kerasflow.tasks.detection.DECODE), for contracts without one.
DETECTION_DECODE = {"max_detections": 100, "score_threshold": 0.05, "iou_threshold": 0.5}


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[ymin, xmin, ymax, xmax]`` box with each of ``boxes`` ``[n, 4]``."""
    return pairwise_iou(np.asarray(box).reshape(1, 4), boxes)[0]


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of ``[ymin, xmin, ymax, xmax]`` boxes."""
    a = np.asarray(a).reshape(-1, 4)
    b = np.asarray(b).reshape(-1, 4)
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def select_detections(boxes, scores, classes, decode: dict | None = None):
    """Class-wise NMS of one image's heatmap peaks, as ``tf.image.combined_non_max_suppression``.

    The peaks scoring above ``score_threshold``, best first, each kept unless an
    earlier kept peak of its class overlaps it by more than ``iou_threshold``,
    until ``max_detections`` are kept. (Per class this is greedy NMS; taking the
    classes together in score order and stopping at ``max_detections`` gives the
    best ``max_detections`` of their union, as the combined op does.)

    Args:
        boxes: ``[P, 4]`` peaks' boxes; scores ``[P]``; classes ``[P]`` (the artefact's outputs).
        decode: the contract's ``decode`` (``max_detections``, ``score_threshold``,
            ``iou_threshold``).

    Returns:
        ``(boxes [D, 4], scores [D], classes [D])`` of the kept detections, best first.
    """
    decode = {**DETECTION_DECODE, **(decode or {})}
    limit = int(decode["max_detections"])
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    order = np.flatnonzero(scores > decode["score_threshold"])
    order = order[np.argsort(-scores[order], kind="stable")]
    same = classes[order][:, None] == classes[order][None, :]
    overlap = same & (pairwise_iou(boxes[order], boxes[order]) > decode["iou_threshold"])
    suppressed = np.zeros(len(order), bool)
    kept: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) >= limit:
            break
        suppressed |= overlap[i]
    chosen = order[np.asarray(kept, np.int64)]
    return boxes[chosen], scores[chosen], classes[chosen]


def padded_detections(outputs, contract: dict) -> dict[str, np.ndarray]:
    """A detection artefact's peaks -> ``boxes``/``scores``/``classes`` after NMS, per image.

    Fixed-size arrays of ``D = max_detections`` rows per image (classes ``-1``,
    boxes and scores 0 in unused rows), boxes as fractions of the model input,
    as the Keras decoding model returns them; ``num_detections`` ``[N]``.
    """
    decode = contract.get("decode") or DETECTION_DECODE
    limit = int(decode.get("max_detections", DETECTION_DECODE["max_detections"]))
    peaks_boxes = np.asarray(outputs["boxes"], np.float32)
    n = len(peaks_boxes)
    boxes = np.zeros((n, limit, 4), np.float32)
    scores = np.zeros((n, limit), np.float32)
    classes = np.full((n, limit), -1, np.int32)
    num = np.zeros(n, np.int32)
    for i in range(n):
        b, s, c = select_detections(
            peaks_boxes[i], np.asarray(outputs["scores"])[i], np.asarray(outputs["classes"])[i],
            decode,
        )  # fmt: skip
        k = len(s)
        boxes[i, :k], scores[i, :k], classes[i, :k], num[i] = b, s, c, k
    return {"boxes": boxes, "scores": scores, "classes": classes, "num_detections": num}


def letterbox_window(image_hw, contract: dict) -> np.ndarray:
    """``[top, left, height, width]`` fractions where an image of ``image_hw`` lands in the
    model input (``data.resize: pad`` keeps its aspect, centred; ``stretch`` fills it)."""
    size = [int(v) for v in contract["image_size"]]
    if (contract.get("data") or {}).get("resize", "stretch") != "pad":
        return np.array([0.0, 0.0, 1.0, 1.0], np.float32)
    h, w = (float(v) for v in image_hw)
    scale = min(size[0] / h, size[1] / w)
    nh = int(np.clip(round(h * scale), 1, size[0]))
    nw = int(np.clip(round(w * scale), 1, size[1]))
    top, left = (size[0] - nh) // 2, (size[1] - nw) // 2
    return np.array([top / size[0], left / size[1], nh / size[0], nw / size[1]], np.float32)


def detection(outputs, contract: dict) -> list[dict]:
    """``boxes`` (``[ymin, xmin, ymax, xmax]`` pixels of each input image), ``scores``,
    ``class_ids`` and ``class_names`` per image.

    ``outputs`` are a SavedModel signature's (decoded in the graph: ``num_detections``,
    boxes already in input pixels) or a LiteRT/ONNX artefact's heatmap peaks
    (``boxes`` fractions of the model input, ``scores``, ``classes``): those get the
    contract's NMS (:func:`padded_detections`) and are mapped back to each image's
    pixels through its letterbox, from ``image_hw`` (``[N, 2]``, the images' sizes
    before preprocessing; absent: the images were the model input itself).
    """
    if "num_detections" in outputs:
        num = np.asarray(outputs["num_detections"])
        boxes = np.asarray(outputs["boxes"], np.float32)
        scores = np.asarray(outputs["scores"], np.float32)
        ids = np.asarray(outputs["class_ids"])
        names = np.asarray(outputs["class_names"])
        return [
            _boxes_json(boxes[i], scores[i], ids[i], names[i], int(n)) for i, n in enumerate(num)
        ]
    decoded = padded_detections(outputs, contract)
    class_names = [str(c) for c in contract["class_names"]]
    size = [float(v) for v in contract["image_size"]]
    hws = outputs.get("image_hw")
    result = []
    for i, n in enumerate(decoded["num_detections"]):
        if hws is None:
            window, hw = np.array([0.0, 0.0, 1.0, 1.0], np.float32), size
        else:
            hw = [float(v) for v in np.asarray(hws[i])]
            window = letterbox_window(hw, contract)
        offset = np.array([window[0], window[1], window[0], window[1]], np.float32)
        scale = np.array([window[2], window[3], window[2], window[3]], np.float32)
        pixels = np.array([hw[0], hw[1], hw[0], hw[1]], np.float32)
        boxes = np.clip((decoded["boxes"][i] - offset) / scale, 0.0, 1.0) * pixels
        ids = decoded["classes"][i]
        names = [class_names[c] if c >= 0 else "" for c in ids]
        result.append(_boxes_json(boxes, decoded["scores"][i], ids, names, int(n)))
    return result


def _boxes_json(boxes, scores, ids, names, n: int) -> dict:
    def name(v):
        return v.decode() if isinstance(v, bytes) else str(v)

    return {
        "boxes": [[round(float(v), 2) for v in boxes[j]] for j in range(n)],
        "scores": [round(float(scores[j]), 4) for j in range(n)],
        "class_ids": [int(ids[j]) for j in range(n)],
        "class_names": [name(names[j]) for j in range(n)],
    }


_BY_TASK: dict[str, Callable[[dict, dict], list[dict]]] = {
    "classification": classification,
    "multilabel": multilabel,
    "segmentation": segmentation,
    "detection": detection,
}


def json_predictions(task: str, outputs, contract: dict) -> list[dict]:
    """One JSON-ready dict per image of ``task``'s outputs.

    Raises:
        ServingError: the task has no array-only predictions.
    """
    if task not in _BY_TASK:
        raise ServingError(
            f"Task {task!r} has no portable predictions; portable artefacts exist for "
            f"{sorted(_BY_TASK)}. Check the artefact contract's task."
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
