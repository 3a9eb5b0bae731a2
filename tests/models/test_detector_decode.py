"""The detector graph: shapes, decoding of hand-made heads, peak picking and NMS."""

from __future__ import annotations

import keras
import numpy as np

from kerasflow import models
from kerasflow.models.detector import CenterNetDecode, inference_model


def _head(h=8, w=8, k=2):
    head = np.full((1, h, w, k + 4), 0.0, np.float32)
    head[..., :k] = -10.0  # background everywhere
    return head


def _place(head, y, x, cls, logit, offset=(0.5, 0.5), size=(2.0, 2.0)):
    k = head.shape[-1] - 4
    head[0, y, x, cls] = logit
    head[0, y, x, k:] = [*offset, *size]


def test_decode_turns_a_peak_into_its_box():
    head = _head()
    _place(head, 2, 5, cls=1, logit=3.0, offset=(0.25, 0.5), size=(4.0, 2.0))
    head[0, 2, 4, 1] = 1.0  # a lower neighbour: not a peak
    out = CenterNetDecode(2, max_detections=5)(head)
    assert int(out["num_detections"][0]) == 1
    # centre (2.25, 5.5) cells of 8 -> box +- (2, 1) cells.
    np.testing.assert_allclose(
        out["boxes"][0, 0].numpy(), np.array([0.25, 4.5, 4.25, 6.5]) / 8, atol=1e-6
    )
    assert out["classes"].numpy()[0].tolist() == [1, -1, -1, -1, -1]
    np.testing.assert_allclose(float(out["scores"][0, 0]), 1 / (1 + np.exp(-3.0)), rtol=1e-6)


def test_nms_removes_an_overlapping_same_class_box_but_keeps_other_classes():
    head = _head(k=2)
    # Two separate peaks (not neighbours) whose boxes overlap with IoU 0.6: NMS keeps one.
    _place(head, 3, 2, cls=0, logit=4.0, size=(4.0, 4.0))
    _place(head, 3, 4, cls=0, logit=2.0, offset=(0.5, -0.5), size=(4.0, 4.0))
    # The same box as the first, of another class, stays.
    _place(head, 6, 6, cls=1, logit=1.0, size=(1.0, 1.0))
    out = CenterNetDecode(2, max_detections=10, iou_threshold=0.5)(head)
    assert int(out["num_detections"][0]) == 2
    assert sorted(out["classes"].numpy()[0, :2].tolist()) == [0, 1]
    # With a looser IoU threshold both class-0 boxes survive.
    out = CenterNetDecode(2, max_detections=10, iou_threshold=0.7)(head)
    assert int(out["num_detections"][0]) == 3


def test_score_threshold_and_max_detections():
    head = _head(k=1)
    for i, logit in enumerate([3.0, 2.0, 1.0, -4.0]):
        _place(head, 1 + 2 * i, 1, cls=0, logit=logit, size=(1.0, 1.0))
    out = CenterNetDecode(1, max_detections=2)(head)
    assert int(out["num_detections"][0]) == 2
    out = CenterNetDecode(1, max_detections=10, score_threshold=0.05)(head)
    assert int(out["num_detections"][0]) == 3  # sigmoid(-4) = 0.018 is dropped


def test_centernet_builds_on_zoo_backbones_and_saves(tmp_path):
    for backbone, params in [
        ("resnet18", {"width_multiplier": 0.125}),
        ("mobilenet_v2", {"alpha": 0.35}),
    ]:
        model = models.build(
            "centernet", (64, 64, 3), 3, backbone=backbone, backbone_params=params,
            neck_filters=8, head_filters=8,
        )  # fmt: skip
        assert model.outputs[0].shape == (None, 16, 16, 7)
        assert any("fpn_add" in layer.name for layer in model.layers)
    detect = inference_model(model, max_detections=7)
    out = detect(np.zeros((2, 64, 64, 3), np.float32))
    assert out["boxes"].shape == (2, 7, 4) and out["classes"].shape == (2, 7)
    path = tmp_path / "det.keras"
    detect.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x)["scores"].numpy(), detect(x)["scores"].numpy(), atol=1e-5)


def test_bad_parameters_are_model_errors():
    import pytest

    from kerasflow.errors import ModelError

    with pytest.raises(ModelError, match="divisible"):
        models.build("centernet", (60, 60, 3), 2, backbone_params={"width_multiplier": 0.125})
    with pytest.raises(ModelError, match="classification model"):
        models.build("centernet", (64, 64, 3), 2, backbone="unet")
