"""A U-Net (the segmentation config's architecture) in LiteRT and ONNX: pixel agreement with Keras."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_unet_litert_and_onnx_agree_with_keras_pixel_by_pixel(tmp_path):
    from kerasflow import models
    from kerasflow.config import DataConfig
    from kerasflow.serving.artefact_predictor import ArtefactPredictor
    from kerasflow.serving.portable import export_portable

    data = DataConfig(source="synthetic:shapes_segmentation", image_size=[64, 64], channels=3)
    # Untrained weights: agreement of the arithmetic does not depend on them.
    model = models.build("unet", (64, 64, 3), 4, input_scaling=data, depth=3, width=16)
    contract = {"task": "segmentation", "class_names": ["bg", "circle", "square", "triangle"]}
    yy, xx = np.mgrid[0:64, 0:64]
    rng = np.random.default_rng(0)
    images = np.stack(
        [
            np.stack([(xx * a + yy * b) % 256, (xx * b) % 256, (yy * a) % 256], -1)
            for a, b in rng.integers(1, 9, (6, 2))
        ]
    ).astype(np.uint8)
    keras_probs = np.asarray(model(images.astype(np.float32), training=False))
    for fmt in ("litert", "onnx"):
        written = export_portable(model, tmp_path, data, contract, fmt)
        predictor = ArtefactPredictor.from_path(written.path)
        outputs = predictor.artefact.run(images)
        assert np.abs(outputs["probabilities"] - keras_probs).max() <= 1e-4
        agreement = np.mean(outputs["class_map"] == keras_probs.argmax(-1))
        assert agreement >= 0.999, (fmt, agreement)
        answer = predictor.predict({"images": images[:2].tolist()})
        assert np.asarray(answer[0]["class_map"]).shape == (64, 64)


def test_multilabel_onnx_applies_the_stored_thresholds(tmp_path):
    from kerasflow import models
    from kerasflow.config import DataConfig
    from kerasflow.serving.artefact_predictor import ArtefactPredictor
    from kerasflow.serving.portable import export_portable

    data = DataConfig(source="synthetic:shapes_multilabel", image_size=[16, 16], channels=3)
    model = models.build(
        "simple_cnn", (16, 16, 3), 3, input_scaling=data, output_activation="sigmoid", width=8
    )
    thresholds = [0.2, 0.5, 0.8]
    contract = {"task": "multilabel", "class_names": ["a", "b", "c"], "thresholds": thresholds}
    written = export_portable(model, tmp_path, data, contract, "onnx")
    predictor = ArtefactPredictor.from_path(written.path)
    images = np.random.default_rng(1).integers(0, 256, (8, 16, 16, 3), np.uint8)
    answers = predictor.predict({"images": images.tolist()})
    probs = np.asarray(model(images.astype(np.float32), training=False))
    for answer, p in zip(answers, probs, strict=True):
        np.testing.assert_allclose(list(answer["probabilities"].values()), p, atol=1e-5)
        want = [n for n, v, t in zip("abc", p, thresholds, strict=True) if v >= t]
        assert answer["labels"] == want
