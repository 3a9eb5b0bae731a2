"""A U-Net (the segmentation config's architecture) in LiteRT and ONNX: pixel agreement with Keras.

One test converts an untrained U-Net (the arithmetic), one a U-Net trained briefly on the
packaged segmentation config's data (``synthetic:shapes_segmentation``), exported and
verified on the test split through ``export_formats``, as ``kerasflow export`` does.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SEGMENTATION_EPOCHS = 3  # ~20 s on 2 CPU cores: test mean IoU ~0.36 against a chance of ~0.21


@pytest.fixture(scope="module")
def trained_unet(tmp_path_factory):
    """The packaged segmentation config (64x64 RGB, U-Net depth 3 width 16) fitted for
    SEGMENTATION_EPOCHS epochs, without a tracked run: ``(cfg, prepared data, model)``."""
    import kerasflow
    from kerasflow import tasks
    from kerasflow.config import default_config_path
    from kerasflow.training.compile import build_compiled_model
    from kerasflow.training.fit import fit_model, set_seeds

    root = tmp_path_factory.mktemp("shapes")
    cfg = kerasflow.load_config(
        default_config_path().parent / "segmentation_shapes.yaml",
        [f"data.root={root}", f"train.epochs={SEGMENTATION_EPOCHS}", "train.verbose=0"],
    )
    task = tasks.get(cfg.experiment.task)
    set_seeds(cfg)
    prepared = task.prepare(cfg.data, cfg.experiment.seed)
    model = build_compiled_model(cfg, prepared)
    data = task.training_data(prepared, model)
    fit_model(model, cfg, data, [])
    return cfg, data, model


def test_trained_unet_litert_and_onnx_agree_with_keras_on_the_test_split(trained_unet, tmp_path):
    from kerasflow import tasks
    from kerasflow.serving.artefact_runtime import load_artefact
    from kerasflow.serving.formats import export_formats
    from kerasflow.serving.verify import split_pixels

    cfg, data, model = trained_unet
    contract = {"task": "segmentation", "class_names": list(data.class_names)}
    report = export_formats(
        model,
        tmp_path / "serving",
        cfg,
        contract,
        ["litert", "onnx"],
        portable_dir=tmp_path / "artefacts",
        data=data,
        isolate=False,
    )
    rows = {r["format"]: r for r in report.verification}
    keras = rows["keras"]
    pixels, masks = split_pixels(data, "test")
    assert keras["examples"] == len(pixels) == 57
    task = tasks.get("segmentation")
    reference = np.asarray(model.predict(pixels.astype(np.float32), verbose=0))
    chance = task.chance_level(task.report(masks, reference, contract))
    # trained: clearly above labelling every pixel background (measured 0.356 vs 0.205)
    assert keras["value"] >= chance + 0.1, (keras["value"], chance)
    for fmt in ("litert", "onnx"):
        row = rows[fmt]
        assert row["top1_agreement"] >= 0.999, row  # measured 1.0 for both
        assert abs(row["metric_drop"]) <= 1e-3, row  # measured 0.0
        assert row["max_prob_diff"] <= 1e-5, row  # measured 6e-7 / 8e-7
    for art in report.artefacts:  # the served output: the class map computed in the artefact
        class_map = load_artefact(art.path).run(pixels)["class_map"]
        agreement = np.mean(class_map == reference.argmax(-1))
        assert agreement >= 0.999, (art.path.name, agreement)


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
