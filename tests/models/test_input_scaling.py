"""Models scale their own input pixels: ``build(..., input_scaling=cfg.data)``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow import models
from tests.pipelines.helpers import data_config, normalized


@pytest.mark.parametrize("mode", ["unit", "imagenet"])
def test_scaling_layer_equals_normalising_the_input(mode):
    cfg = data_config(normalize=mode, channels=3)
    keras.utils.set_random_seed(0)
    scaled = models.build("simple_cnn", (8, 8, 3), 4, input_scaling=cfg, width=4)
    plain = models.build("simple_cnn", (8, 8, 3), 4, width=4)
    plain.set_weights(scaled.get_weights())  # Rescaling has no weights
    assert [layer.name for layer in scaled.layers[:2]] == ["simple_cnn_input", "simple_cnn_scaling"]
    assert "simple_cnn_scaling" not in [layer.name for layer in plain.layers]
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    want = plain(normalized(pixels, cfg).astype(np.float32), training=False)
    # uint8 fed straight in: the functional model casts, then scales
    got = scaled(pixels, training=False)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_encoder_models_scale_once_and_reload(tmp_path):
    cfg = data_config(normalize="symmetric", channels=1)
    model = models.build(
        "unet", (32, 32, 1), 3, input_scaling=cfg, encoder="resnet18",
        encoder_params={"width_multiplier": 0.125},
    )  # fmt: skip
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.endswith("_scaling")] == ["unet_encoder_scaling"]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    scaling = model.get_layer("unet_encoder_scaling")
    np.testing.assert_allclose(np.asarray(scaling(np.array([[0.0, 255.0]]))), [[-1.0, 1.0]])
