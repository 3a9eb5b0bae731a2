"""Mean average precision of detections, computed as the COCO evaluation does.

For each class and IoU threshold, detections of all images are ranked by
score; each one, in its image, matches the unmatched ground-truth box of the
same class with the highest IoU at or above the threshold (a true positive),
else it is a false positive. Precision is made non-increasing from the right
and read at the 101 recall points ``0, 0.01, ..., 1`` (0 past the highest
recall reached); AP is their mean. This is pycocotools' ``COCOeval`` with
``iouType="bbox"``, area range ``all`` and ``maxDets`` per image, so
``map50`` equals its AP at IoU 0.5 and ``map`` its AP@[0.5:0.95].

Classes without ground truth have no AP (``nan``) and are left out of the
means, as COCO does; a class with ground truth but no detections has AP 0.

Boxes are ``[ymin, xmin, ymax, xmax]`` in any one unit per image (pixels of
the model input in kerasflow's reports). IoU is not invariant to stretching,
so use pixels rather than fractions of a non-square image.

Example:
    >>> dets = [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0]))]
    >>> gts = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    >>> mean_average_precision(dets, gts, num_classes=1)["map50"]
    1.0
"""

from __future__ import annotations

import numpy as np

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of ``[ymin, xmin, ymax, xmax]`` boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match(det_boxes, gt_boxes, thresholds) -> np.ndarray:
    """``[T, D]`` true-positive flags of score-sorted detections in one image."""
    tp = np.zeros((len(thresholds), len(det_boxes)), bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    ious = box_iou(det_boxes, gt_boxes)
    for t, thr in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for d in range(len(det_boxes)):
            best, which = min(thr, 1 - 1e-10), -1
            for g in range(len(gt_boxes)):
                if taken[g] or ious[d, g] < best:
                    continue
                best, which = ious[d, g], g
            if which >= 0:
                taken[which] = True
                tp[t, d] = True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """COCO 101-point AP of ranked detections (``tp`` flags in the same order as ``scores``)."""
    if num_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    hits = np.asarray(tp, bool)[order]
    tps = np.cumsum(hits)
    fps = np.cumsum(~hits)
    recall = tps / num_gt
    precision = tps / np.maximum(tps + fps, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    read = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(read.mean())


def mean_average_precision(
    detections,
    ground_truths,
    num_classes: int,
    iou_thresholds=COCO_IOU_THRESHOLDS,
    max_detections: int = 100,
    class_names: list[str] | None = None,
) -> dict:
    """mAP@0.5, mAP@[0.5:0.95] and per-class APs.

    Args:
        detections: per image, ``(boxes [n, 4], scores [n], classes [n])``.
        ground_truths: per image, ``(boxes [m, 4], classes [m])``.
        num_classes: classes ``0..num_classes-1``.
        iou_thresholds: the thresholds averaged for ``map`` (COCO's by default;
            0.5 must be one of them for ``map50``).
        max_detections: highest-scored detections kept per image and class.
        class_names: names for the ``per_class`` keys (default: the ids).

    Returns:
        ``{"map", "map50", "map75", "per_class": {name: {"ap", "ap50", "ap75",
        "num_gt", "num_detections"}}}``; ``map75`` is ``nan`` when 0.75 is not
        among the thresholds.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(
            "detections and ground_truths need one entry per image. "
            f"Received: {len(detections)} and {len(ground_truths)}"
        )
    thresholds = np.asarray(iou_thresholds, np.float64)
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    ap = np.full((num_classes, len(thresholds)), np.nan)
    per_class = {}
    for c in range(num_classes):
        all_scores, all_tp, num_gt, num_det = [], [], 0, 0
        for (d_boxes, d_scores, d_classes), (g_boxes, g_classes) in zip(
            detections, ground_truths, strict=True
        ):
            d_boxes = np.asarray(d_boxes).reshape(-1, 4)
            d_scores = np.asarray(d_scores).reshape(-1)
            g_boxes = np.asarray(g_boxes).reshape(-1, 4)
            dm = np.asarray(d_classes).reshape(-1) == c
            gm = np.asarray(g_classes).reshape(-1) == c
            boxes, scores = d_boxes[dm], d_scores[dm]
            order = np.argsort(-scores, kind="mergesort")[:max_detections]
            boxes, scores = boxes[order], scores[order]
            all_scores.append(scores)
            all_tp.append(_match(boxes, g_boxes[gm], thresholds))
            num_gt += int(gm.sum())
            num_det += len(scores)
        scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
        tp = np.concatenate(all_tp, axis=1) if all_tp else np.zeros((len(thresholds), 0), bool)
        for t in range(len(thresholds)):
            ap[c, t] = average_precision(scores, tp[t], num_gt)
        per_class[names[c]] = {
            "ap": _nanmean(ap[c]),
            "ap50": _at(ap[c], thresholds, 0.5),
            "ap75": _at(ap[c], thresholds, 0.75),
            "num_gt": num_gt,
            "num_detections": num_det,
        }
    with_gt = ~np.isnan(ap[:, 0]) if num_classes else np.zeros(0, bool)
    return {
        "map": _nanmean(ap[with_gt].mean(axis=1)) if with_gt.any() else float("nan"),
        "map50": _nanmean([_at(ap[c], thresholds, 0.5) for c in np.flatnonzero(with_gt)]),
        "map75": _nanmean([_at(ap[c], thresholds, 0.75) for c in np.flatnonzero(with_gt)]),
        "per_class": per_class,
    }


def _at(values: np.ndarray, thresholds: np.ndarray, thr: float) -> float:
    hit = np.flatnonzero(np.isclose(thresholds, thr))
    return float(values[hit[0]]) if len(hit) else float("nan")


def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
