"""The NumPy/Pillow preprocessing of LiteRT/ONNX serving against the pipeline's TensorFlow one."""

from __future__ import annotations

import io

import numpy as np
import pytest

from kerasflow.config import DataConfig
from kerasflow.serving import pixels


@pytest.mark.parametrize(
    ("shape", "size", "channels", "resize", "interpolation", "crop"),
    [
        ((8, 8, 1), (16, 16), 1, "stretch", "bilinear", None),
        ((37, 53, 3), (16, 24), 3, "stretch", "bilinear", None),
        ((37, 53, 3), (20, 20), 1, "pad", "bilinear", None),
        ((53, 37, 4), (20, 20), 3, "crop", "nearest", None),
        ((40, 60, 3), (32, 32), 3, "stretch", "bilinear", 0.8),
        ((30, 30, 1), (64, 48), 3, "stretch", "nearest", None),
    ],
)
def test_prepare_image_matches_the_pipeline(shape, size, channels, resize, interpolation, crop):
    import tensorflow as tf

    from kerasflow.pipelines.transforms import deterministic

    data = DataConfig(
        source="digits",
        image_size=list(size),
        channels=channels,
        resize=resize,
        interpolation=interpolation,
        center_crop=crop,
    )
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape, np.uint8)
    want = deterministic(tf.constant(image), data).numpy()
    got = pixels.prepare_image(image, data.model_dump(mode="json"))
    assert got.shape == want.shape and got.dtype == np.uint8
    # Float rounding of the interpolation weights may move a value across .5.
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.mean(got == want) > 0.99


def test_decode_file_applies_the_channel_policy():
    from PIL import Image

    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    gray = pixels.decode_file(buf.getvalue(), 1)
    assert gray.shape == (5, 7, 1) and int(gray[0, 0, 0]) == round(200 * 0.2989)
    rgb = pixels.decode_file(buf.getvalue(), 3)
    assert rgb.shape == (5, 7, 3) and rgb[0, 0].tolist() == [200, 0, 0]
    with pytest.raises((OSError, ValueError)):
        pixels.decode_file(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, 1)
