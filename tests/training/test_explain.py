"""Explanations: every method on every classification family, exact cases, and a sanity test."""

from __future__ import annotations

import struct

import keras
import numpy as np
import pytest

from kerasflow import models
from kerasflow.errors import ModelError
from kerasflow.training import explain as ex

# One tiny variant per classification family (factory), small enough to run every method.
FAMILIES = {
    "simple_cnn": ((32, 32, 1), {"width": 4, "dense_units": 8}),
    "alexnet": ((64, 64, 3), {"width_multiplier": 0.0625, "fc_units": 16}),
    "vgg11": ((32, 32, 3), {"width_multiplier": 0.0625, "fc_units": 16}),
    "nin": ((32, 32, 1), {"width_multiplier": 0.0625}),
    "googlenet": ((32, 32, 3), {"width_multiplier": 0.125}),
    "resnet18": ((32, 32, 3), {"width_multiplier": 0.125}),
    "resnet18_v2": ((32, 32, 3), {"width_multiplier": 0.125}),
    "se_resnet18": ((32, 32, 3), {"width_multiplier": 0.125}),
    "densenet121": ((32, 32, 3), {"width_multiplier": 0.125}),
    "mobilenet_v1": ((32, 32, 3), {"alpha": 0.25}),
    "mobilenet_v2": ((32, 32, 1), {"alpha": 0.35}),
    "keras_app": ((32, 32, 3), {"application": "MobileNetV2", "alpha": 0.35}),
}
NUM_CLASSES = 4


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        data = f.read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_every_classification_family_is_covered():
    targets = {models.get_spec(n).target for n in models.names(kind="classification")}
    covered = {models.get_spec(n).target for n in FAMILIES}
    assert targets == covered


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_method_on_each_family(name):
    shape, params = FAMILIES[name]
    keras.utils.set_random_seed(0)
    model = models.build(name, shape, NUM_CLASSES, **params)
    images = np.random.default_rng(0).random((2, *shape)).astype("float32")
    layer = ex.find_last_conv_layer(model)
    assert len(model.get_layer(layer).output.shape) == 4
    for method, options in (
        ("gradcam", {}),
        ("gradcam++", {}),
        ("saliency", {"samples": 2 if name == "simple_cnn" else 0}),  # SmoothGrad once
        ("integrated_gradients", {"steps": 4}),
    ):
        result = ex.explain(model, images, method, target=[1, 2], **options)
        maps = result.heatmaps
        assert maps.shape == (2, *shape[:2]), method
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
        for m in maps:  # each map is scaled to peak 1, unless it is all zero
            assert m.max() == pytest.approx(1.0) or m.max() == 0
        assert result.targets.tolist() == [1, 2]
        assert result.probabilities.shape == (2, NUM_CLASSES)
        assert result.layer == (layer if method.startswith("gradcam") else None)


@pytest.fixture(scope="module")
def gap_model():
    """conv -> relu -> global average pool -> dense -> softmax: Grad-CAM is exactly CAM here."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="feat")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, name="m_logits")(x)
    out = keras.layers.Activation("softmax", dtype="float32", name="m_probabilities")(x)
    model = keras.Model(inputs, out, name="m")
    images = np.random.default_rng(2).random((3, 12, 12, 1)).astype("float32")
    return model, images


def test_gradcam_equals_class_activation_map_by_hand(gap_model):
    model, images = gap_model
    result = ex.explain(model, images, "gradcam", target=2)
    assert result.layer == "feat"
    feats = keras.Model(model.inputs, model.get_layer("feat").output)(images).numpy()
    w = model.get_layer("m_logits").get_weights()[0][:, 2]
    cam = np.maximum(feats @ w / (12 * 12), 0)  # mean gradient = w / (h * w) for GAP
    np.testing.assert_allclose(result.attributions, cam, rtol=1e-4, atol=1e-7)
    peak = cam.reshape(3, -1).max(1)[:, None, None]
    np.testing.assert_allclose(result.heatmaps, cam / peak, rtol=1e-4, atol=1e-6)


def test_predicted_class_is_the_default_target(gap_model):
    model, images = gap_model
    result = ex.explain(model, images, "saliency")
    np.testing.assert_array_equal(result.targets, result.probabilities.argmax(1))
    other = (result.predictions + 1) % 3
    changed = ex.explain(model, images, "saliency", target=other)
    assert not np.allclose(changed.attributions, result.attributions)


def test_saliency_is_the_input_gradient_of_the_logit(gap_model):
    import tensorflow as tf

    model, images = gap_model
    x = tf.convert_to_tensor(images)
    logits_model = keras.Model(model.inputs, model.get_layer("m_probabilities").input)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = logits_model(x)[:, 1]
    grads = tape.gradient(score, x).numpy()
    result = ex.explain(model, images, "saliency", target=1)
    np.testing.assert_allclose(result.attributions, grads, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        result.heatmaps * np.abs(grads).max(axis=(1, 2, 3))[:, None, None],
        np.abs(grads)[..., 0],
        rtol=1e-5,
        atol=1e-8,
    )


def test_integrated_gradients_completeness(gap_model):
    """Attributions sum to logit(image) - logit(baseline) (Sundararajan et al.'s axiom)."""
    model, images = gap_model
    logits_model = keras.Model(model.inputs, model.get_layer("m_probabilities").input)
    for baseline in (None, 0.5):
        result = ex.explain(
            model, images, "integrated_gradients", target=0, baseline=baseline, steps=128
        )
        base = np.full_like(images, 0.0 if baseline is None else baseline)
        gap = logits_model(images).numpy()[:, 0] - logits_model(base).numpy()[:, 0]
        total = result.attributions.reshape(3, -1).sum(1)
        np.testing.assert_allclose(total, gap, rtol=0.02, atol=1e-3)


def test_bad_arguments_raise_model_error(gap_model):
    model, images = gap_model
    with pytest.raises(ModelError, match="method"):
        ex.explain(model, images, "lime")
    with pytest.raises(ModelError, match="No layer"):
        ex.explain(model, images, "gradcam", layer="nope")
    with pytest.raises(ModelError, match="target"):
        ex.explain(model, images, "gradcam", target=7)
    with pytest.raises(ModelError, match="baseline"):
        ex.explain(model, images, "integrated_gradients", baseline="sky")
    seg = models.build("unet", (16, 16, 1), 2, depth=2, width=4)
    with pytest.raises(ModelError, match="classifier"):
        ex.explain(seg, images[:, :16, :16], "gradcam")


# ------------------------------------------------------------------ sanity test
def _shape(kind: int, size: int = 9) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    if kind == 0:
        m = (abs(yy - c) <= 3) & (abs(xx - c) <= 3)  # square
    elif kind == 1:
        m = np.hypot(yy - c, xx - c) <= 4.2  # disc
    else:
        m = (yy >= 1) & (abs(xx - c) <= (yy - 1) * 0.55)  # triangle
    return m.astype("float32")


def quadrant_images(n: int, seed: int, classes: int = 4):
    """32x32 noise; a shape (class 0-2, class 3 none) in one quadrant; a texture patch in another.

    The texture is a distractor the class does not depend on: a trained model
    learns to ignore it, a randomly initialised one does not.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.05, (n, 32, 32, 1)).astype("float32")
    y = rng.integers(0, classes, n)
    quadrant = rng.integers(0, 4, n)
    for i in range(n):
        r, c = (quadrant[i] // 2) * 16, (quadrant[i] % 2) * 16
        dy, dx = rng.integers(0, 8, 2)
        if y[i] < 3:
            x[i, r + dy : r + dy + 9, c + dx : c + dx + 9, 0] += _shape(y[i])
        d = (quadrant[i] + rng.integers(1, 4)) % 4
        r, c = (d // 2) * 16, (d % 2) * 16
        dy, dx = rng.integers(0, 8, 2)
        x[i, r + dy : r + dy + 9, c + dx : c + dx + 9, 0] += rng.uniform(0, 1, (9, 9))
    return x, y, quadrant


def quadrant_mass(maps: np.ndarray, quadrant: np.ndarray) -> np.ndarray:
    out = []
    for m, q in zip(maps, quadrant, strict=True):
        r, c = (q // 2) * 16, (q % 2) * 16
        out.append(m[r : r + 16, c : c + 16].sum() / max(m.sum(), 1e-12))
    return np.array(out)


@pytest.fixture(scope="module")
def quadrant_model():
    keras.utils.set_random_seed(0)
    x, y, _ = quadrant_images(900, seed=0)
    model = models.build(
        "simple_cnn",
        (32, 32, 1),
        4,
        width=8,
        depth=2,
        dense_units=0,
        dropout=0.0,
        batch_norm=False,
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    xt, yt, qt = quadrant_images(60, seed=1, classes=3)  # every test image has a shape
    return model, xt, yt, qt


def test_gradcam_mass_sits_in_the_object_quadrant(quadrant_model):
    model, x, y, q = quadrant_model
    result = ex.explain(model, x, "gradcam", target=y)
    assert (result.predictions == y).mean() >= 0.95
    mass = quadrant_mass(result.heatmaps, q)
    assert mass.mean() > 0.6, mass
    assert (mass > 0.5).mean() >= 0.8, mass


def test_gradcam_changes_after_randomising_the_weights(quadrant_model):
    """Adebayo et al. (2018): maps of a randomly re-initialised model differ from the trained ones."""
    model, x, y, q = quadrant_model
    trained = ex.heatmaps(model, x, "gradcam", target=y)
    trained_mass = quadrant_mass(trained, q).mean()
    correlations, masses = [], []
    for seed in range(3):
        keras.utils.set_random_seed(100 + seed)
        random_model = keras.models.clone_model(model)  # same graph, fresh initial weights
        maps = ex.heatmaps(random_model, x, "gradcam", target=y)
        correlations.append(
            np.mean(
                [
                    np.corrcoef(a.ravel(), b.ravel())[0, 1] if b.std() > 0 else 0.0
                    for a, b in zip(trained, maps, strict=True)
                ]
            )
        )
        masses.append(quadrant_mass(maps, q).mean())
    assert np.mean(correlations) < 0.5, correlations
    assert trained_mass - np.mean(masses) > 0.2, (trained_mass, masses)


# ------------------------------------------------------------------ files and CLI
def test_cli_explain_writes_overlays(digits_result, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from kerasflow.cli import cli
    from kerasflow.tasks.plots import LABEL_BAND_PX

    prepared_images = []
    for i in range(2):
        path = tmp_path / f"digit{i}.png"
        arr = np.zeros((16, 16), np.uint8)
        arr[3:13, 6 + i : 9 + i] = 255  # a bar, like a "1"
        Image.fromarray(arr).save(path)
        prepared_images.append(str(path))
    out = tmp_path / "out"
    env = {"MLFLOW_TRACKING_URI": digits_result.config.tracking.uri}
    uri = f"runs:/{digits_result.run_id}/model"
    for method in ("gradcam", "integrated_gradients"):
        res = CliRunner().invoke(
            cli,
            [
                "explain",
                uri,
                "--images",
                *prepared_images,
                "--out",
                str(out),
                "--method",
                method,
                "--steps",
                "8",
            ],
            env=env,
        )
        assert res.exit_code == 0, res.output
        assert res.output.count("predicted") == 2
    for i in range(2):
        for tag in ("gradcam", "integrated_gradients"):
            # 16 px x 14, below the band holding the predicted class and its score
            assert png_size(out / f"digit{i}_{tag}.png") == (224, 224 + LABEL_BAND_PX)
    res = CliRunner().invoke(
        cli,
        ["explain", uri, "--images", prepared_images[0], "--out", str(out), "--target", "3"],
        env=env,
    )
    assert res.exit_code == 0 and "explained 3" in res.output, res.output
