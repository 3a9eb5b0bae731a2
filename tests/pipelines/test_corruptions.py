"""The corruption ops: ImageNet-C parameters on the 0..255 scale, seeded, geometry kept."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasflow.errors import ConfigError
from kerasflow.pipelines import corruptions as C


def _digit_like(n=4, side=16, channels=1, seed=0):
    """Bright strokes on a dark background, like the digits (0..255 uint8)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, side, side, channels), np.uint8)
    for i in range(n):
        r, c = rng.integers(2, side // 2, 2)
        images[i, r : r + side // 3, c : c + 3] = 200 + i * 10
        images[i, r : r + 3, c : c + side // 3] = 180
    return images


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_each_corruption_keeps_shape_dtype_and_range_and_grows_with_severity(name):
    images = _digit_like()
    distances = []
    for severity in C.SEVERITIES:
        out = C.corrupt(images, name, severity, seed=(1, 2)).numpy()
        assert out.shape == images.shape and out.dtype == np.uint8
        distances.append(np.abs(out.astype(float) - images).mean())
    assert distances[0] > 0, f"{name} at severity 1 changed nothing"
    # A stronger severity moves the images further from the clean ones (JPEG: not below).
    assert all(b >= a - 0.05 for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[-1] > distances[0]


def test_gaussian_noise_has_imagenet_c_std_on_the_pixel_scale_and_float_stays_float():
    gray = np.full((1, 64, 64, 3), 128.0, np.float32)
    out = C.corrupt(gray, "gaussian_noise", 1, seed=(0, 0)).numpy()
    assert out.dtype == np.float32
    assert np.std(out - 128.0) == pytest.approx(0.08 * 255, rel=0.05)


def test_contrast_keeps_the_mean_and_scales_the_spread():
    images = _digit_like(n=1).astype(np.float32)
    out = C.corrupt(images, "contrast", 2).numpy()
    assert out.mean() == pytest.approx(images.mean(), abs=1e-3)
    assert out.std() == pytest.approx(0.3 * images.std(), rel=1e-4)


def test_pixelate_makes_blocks_and_blur_spreads_a_point():
    images = np.zeros((1, 20, 20, 1), np.float32)
    images[0, 10, 10] = 255
    blurred = C.corrupt(images, "gaussian_blur", 3).numpy()[0, ..., 0]
    assert blurred.sum() == pytest.approx(255, rel=1e-3)  # symmetric padding loses no light
    assert 0 < blurred[10, 10] < 255 and blurred[10, 12] > 0
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1, 20, 20, 1)).astype(np.float32)
    pix = C.corrupt(noise, "pixelate", 5).numpy()[0, ..., 0]  # 5 x 5 cells of 4 x 4 pixels
    assert len(np.unique(pix)) <= 25


def test_seeded_noise_repeats_and_differs_per_seed_and_per_element():
    images = _digit_like(n=6)
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(6))).batch(3)
    first = [x.numpy() for x, _ in C.corrupt_dataset(ds, "shot_noise", 3, seed=7)]
    again = [x.numpy() for x, _ in C.corrupt_dataset(ds, "shot_noise", 3, seed=7)]
    other = [x.numpy() for x, _ in C.corrupt_dataset(ds, "shot_noise", 3, seed=8)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))
    labels = [y.numpy() for _, y in C.corrupt_dataset(ds, "shot_noise", 3, seed=7)]
    np.testing.assert_array_equal(np.concatenate(labels), np.arange(6))  # targets untouched
    one = C.corrupt(images[0], "gaussian_noise", 2, seed=(1, 1))  # a single (H, W, C) image
    assert one.shape == images[0].shape


def test_brightness_of_rgb_raises_the_value_channel():
    rgb = np.zeros((1, 8, 8, 3), np.float32)
    rgb[..., 0] = 100.0
    out = C.corrupt(rgb, "brightness", 1).numpy()
    assert out[..., 0].mean() == pytest.approx(100 + 0.1 * 255, abs=0.5)
    assert out[..., 1:].max() == pytest.approx(0, abs=1e-3)  # hue and saturation kept


def test_bad_name_and_severity_are_config_errors():
    with pytest.raises(ConfigError, match="gaussian_noise"):
        C.corrupt(_digit_like(), "fog", 1)
    with pytest.raises(ConfigError, match="1..5"):
        C.parameter("jpeg", 6)
