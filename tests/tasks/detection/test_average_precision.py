"""mAP on hand-computed cases, and against pycocotools when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from kerasflow.tasks.detection.average_precision import (
    average_precision,
    box_iou,
    mean_average_precision,
)


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_perfect_detections_give_one():
    gts = [(np.array([[0, 0, 10, 10], [20, 20, 40, 40]]), np.array([0, 1]))]
    dets = [(gts[0][0], np.array([0.9, 0.8]), np.array([0, 1]))]
    report = mean_average_precision(dets, gts, 2, class_names=["a", "b"])
    assert report["map"] == 1.0 and report["map50"] == 1.0
    assert report["per_class"]["b"]["num_gt"] == 1


def test_ranked_tp_fp_tp_hand_computed():
    # Two objects; detections by score: hit, miss, hit. Precision 1 up to recall 0.5,
    # then 2/3 up to recall 1: 51 recall points at 1 and 50 at 2/3.
    gts = [
        (np.array([[0, 0, 10, 10]]), np.array([0])),
        (np.array([[0, 0, 10, 10]]), np.array([0])),
    ]
    dets = [
        (np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.8]), np.array([0, 0])),
        (np.array([[0, 0, 10, 10]]), np.array([0.7]), np.array([0])),
    ]
    report = mean_average_precision(dets, gts, 1, iou_thresholds=[0.5])
    assert report["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 2) == pytest.approx(
        (51 + 50 * 2 / 3) / 101
    )


def test_iou_thresholds_and_duplicates():
    gts = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    # IoU 0.6 with the object: a hit at 0.5, 0.55, 0.6, a miss above -> AP@[.5:.95] = 3/10.
    dets = [(np.array([[0, 0, 10, 6]]), np.array([0.9]), np.array([0]))]
    report = mean_average_precision(dets, gts, 1)
    assert report["map50"] == 1.0 and report["map"] == pytest.approx(0.3)
    assert report["map75"] == 0.0
    # A duplicate of a matched object is a false positive (ranked after the hit: AP stays 1).
    dets = [(np.array([[0, 0, 10, 10], [0, 0, 10, 9]]), np.array([0.9, 0.5]), np.array([0, 0]))]
    assert mean_average_precision(dets, gts, 1)["map50"] == 1.0
    # The higher-scored one matches first even when the other fits better.
    dets = [(np.array([[0, 0, 10, 10], [0, 0, 10, 9]]), np.array([0.5, 0.9]), np.array([0, 0]))]
    assert mean_average_precision(dets, gts, 1)["map50"] == 1.0
    # A false positive ranked first halves precision at every recall: AP = 0.5.
    dets = [(np.array([[0, 0, 10, 10], [30, 30, 40, 40]]), np.array([0.5, 0.9]), np.array([0, 0]))]
    assert mean_average_precision(dets, gts, 1)["map50"] == pytest.approx(0.5)


def test_classes_without_ground_truth_are_left_out_and_missed_classes_count_zero():
    gts = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 1]))]
    dets = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.9]), np.array([0, 2]))]
    report = mean_average_precision(dets, gts, 3, iou_thresholds=[0.5])
    assert np.isnan(report["per_class"]["2"]["ap50"])  # no ground truth: no AP
    assert report["per_class"]["1"]["ap50"] == 0.0  # ground truth, no detection
    assert report["map50"] == pytest.approx(0.5)


def _random_case(rng, num_images=12, num_classes=3):
    gts, dets = [], []
    for _ in range(num_images):
        n = rng.integers(0, 5)
        yx = rng.uniform(0, 80, size=(n, 2))
        hw = rng.uniform(5, 30, size=(n, 2))
        g = np.concatenate([yx, yx + hw], 1)
        gc = rng.integers(0, num_classes, n)
        gts.append((g, gc))
        # Jittered copies of most objects plus random false positives.
        keep = rng.uniform(size=n) < 0.8
        jitter = g[keep] + rng.normal(0, 3, size=(keep.sum(), 4))
        m = rng.integers(0, 3)
        fyx = rng.uniform(0, 80, size=(m, 2))
        fp = np.concatenate([fyx, fyx + rng.uniform(5, 30, size=(m, 2))], 1)
        boxes = np.concatenate([jitter, fp])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        classes = np.concatenate([gc[keep], rng.integers(0, num_classes, m)])
        dets.append((boxes, rng.uniform(0.05, 1, len(boxes)).round(3), classes))
    return dets, gts


def test_matches_pycocotools():
    pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install .[dev])")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    dets, gts = _random_case(rng)
    num_classes = 3
    images = [{"id": i + 1, "width": 120, "height": 120} for i in range(len(gts))]
    anns, results = [], []
    for i, (g, gc) in enumerate(gts):
        for (y0, x0, y1, x1), c in zip(g, gc, strict=True):
            w, h = x1 - x0, y1 - y0
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                 "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0}
            )  # fmt: skip
    for i, (b, s, c) in enumerate(dets):
        for (y0, x0, y1, x1), score, cls in zip(b, s, c, strict=True):
            results.append(
                {"image_id": i + 1, "category_id": int(cls) + 1,
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
            )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
        }
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = mean_average_precision(dets, gts, num_classes)
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["map50"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert ours["map75"] == pytest.approx(ev.stats[2], abs=1e-6)
    assert 0.2 < ours["map50"] < 1.0  # a non-trivial case
