"""Each transform's effect on real pixels (and on masks)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasflow.pipelines import transforms as T
from tests.pipelines.helpers import data_config, encode, gradient_image, normalized

SEED = tf.constant([1, 2], tf.int64)


def _find_seed(pred, tries=64):
    """A seed for which ``pred(seed)`` holds (e.g. a coin flip came up heads)."""
    for i in range(tries):
        s = tf.constant([i, 7], tf.int64)
        if pred(s):
            return s
    raise AssertionError("no seed found")


def _mask():
    m = np.zeros((12, 12), np.int32)
    m[2:5, 1:4] = 1
    m[7:11, 6:11] = 2
    return tf.constant(m)


# ------------------------------------------------------------------ decode
@pytest.mark.parametrize(
    "mode,fmt", [("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"), ("P", "GIF"),
                 ("RGB", "BMP"), ("LA", "PNG"), ("RGB", "JPEG")],
)  # fmt: skip
def test_decode_channel_policy(mode, fmt):
    rgb = Image.fromarray(gradient_image(10, 14))
    data = encode(rgb.convert(mode), fmt)
    want = np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB")).astype(int)
    for channels in (1, 3):
        image = T.decode_image(tf.constant(data), channels).numpy()
        assert image.shape == (10, 14, channels) and image.dtype == np.uint8
        if channels == 3:
            assert np.abs(image.astype(int) - want).mean() < 3.0  # same colours as Pillow


def test_decode_rejects_html():
    with pytest.raises(tf.errors.InvalidArgumentError):
        T.decode_image(tf.constant(b"<html><body>404</body></html>"), 3)


# ------------------------------------------------------------------ deterministic
def test_resize_modes_pad_and_crop():
    img = np.full((10, 20, 1), 200, np.uint8)  # 1:2 aspect
    padded = T.resize_image(tf.constant(img), (10, 10), "pad", "nearest").numpy()[..., 0]
    assert (padded[:2] == 0).all() and (padded[-3:] == 0).all() and (padded[3:7] == 200).all()
    stretched = T.resize_image(tf.constant(img), (10, 10), "stretch").numpy()
    assert (stretched == 200).all()
    left_right = np.concatenate([np.zeros((10, 10, 1)), np.full((10, 10, 1), 255)], 1)
    cropped = T.resize_image(tf.constant(left_right.astype(np.uint8)), (4, 4), "crop", "nearest")
    np.testing.assert_array_equal(cropped.numpy()[0, :, 0], [0, 0, 255, 255])


def test_resize_mask_nearest_keeps_classes():
    m = T.resize_mask(_mask(), (7, 9), "pad").numpy()
    assert m.dtype == np.int32 and set(np.unique(m)) == {0, 1, 2}


def test_center_crop_pixels():
    img = tf.constant(np.arange(100, dtype=np.uint8).reshape(10, 10, 1))
    out = T.center_crop(img, 0.4).numpy()[..., 0]
    np.testing.assert_array_equal(out, np.arange(100).reshape(10, 10)[3:7, 3:7])


@pytest.mark.parametrize("mode,lo,hi", [("unit", 0, 1), ("symmetric", -1, 1), ("none", 0, 255)])
def test_normalize_ranges(mode, lo, hi):
    scale, offset = T.input_scaling(data_config(normalize=mode, channels=1))
    x = np.array([0.0, 255.0]) * scale + offset
    np.testing.assert_allclose(x, [lo, hi], atol=1e-12)


def test_normalize_mean_std():
    cfg = data_config(normalize="mean_std", channels=3, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1])
    scale, offset = T.input_scaling(cfg)
    y = np.full([2, 2, 3], 0.75 * 255) * scale + offset
    np.testing.assert_allclose(y[0, 0], [1.0, 0.5, 0.25])


def test_preprocess_is_pure_tf_function():
    cfg = data_config(image_size=[8, 6], channels=3)
    fn = tf.function(lambda b: T.preprocess(T.decode_image(b, 3), cfg))
    data = tf.constant(encode(Image.fromarray(gradient_image(20, 15)), "PNG"))
    out = fn(data).numpy()
    assert out.shape == (8, 6, 3) and out.dtype == np.uint8
    # exactly the pipeline's deterministic step: decode, channels, resize, rounded to uint8
    want = T.deterministic(T.decode_image(data, 3), cfg).numpy()
    np.testing.assert_array_equal(out, want)
    assert 0 < out.min() < out.max() > 200


@pytest.mark.parametrize("mode", ["unit", "symmetric", "none", "imagenet", "mean_std"])
@pytest.mark.parametrize("channels", [1, 3])
def test_input_scaling_equals_normalize_of_pixels(mode, channels):
    kw = {"mean": [0.3] * channels, "std": [0.2] * channels} if mode == "mean_std" else {}
    cfg = data_config(normalize=mode, channels=channels, **kw)
    pixels = tf.constant(np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(channels, -1))
    scale, offset = T.input_scaling(cfg)
    assert len(scale) == len(offset) == channels
    got = tf.cast(pixels, tf.float32) * scale + offset
    want = normalized(pixels.numpy(), cfg)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_from_unit_gives_unrounded_pixels():
    x = tf.constant([0.0, 0.5 / 255, 0.5, 1.0])
    np.testing.assert_allclose(T.from_unit(x).numpy(), [0.0, 0.5, 127.5, 255.0], rtol=1e-6)


# ------------------------------------------------------------------ geometric
def test_horizontal_flip_mirrors_image_and_mask():
    img = tf.constant(gradient_image(12, 12))
    s = _find_seed(lambda s: bool(T.uniform(s) < 0.5))
    out, mask = T.flip(img, _mask(), s, horizontal=True)
    np.testing.assert_array_equal(out.numpy(), img.numpy()[:, ::-1])
    np.testing.assert_array_equal(mask.numpy(), _mask().numpy()[:, ::-1])
    s = _find_seed(lambda s: bool(T.uniform(s) >= 0.5))
    out, _ = T.flip(img, None, s, horizontal=True)
    np.testing.assert_array_equal(out.numpy(), img.numpy())


def test_vertical_flip_mirrors():
    img = tf.constant(gradient_image(12, 12))
    s = _find_seed(lambda s: bool(T.uniform(s) < 0.5))
    out, mask = T.flip(img, _mask(), s, horizontal=False)
    np.testing.assert_array_equal(out.numpy(), img.numpy()[::-1])
    np.testing.assert_array_equal(mask.numpy(), _mask().numpy()[::-1])


def test_rotate_quarter_turn_matches_rot90():
    img = tf.constant(np.arange(25, dtype=np.float32).reshape(5, 5, 1))
    out, mask = T.rotate(img, tf.constant(np.arange(25, dtype=np.int32).reshape(5, 5)),
                         tf.constant(np.pi / 2))  # fmt: skip
    np.testing.assert_allclose(out.numpy()[..., 0], np.rot90(img.numpy()[..., 0]), atol=1e-3)
    np.testing.assert_array_equal(mask.numpy(), np.rot90(np.arange(25).reshape(5, 5)))


def test_translate_shifts_pixels():
    img = tf.constant(np.arange(16, dtype=np.float32).reshape(4, 4, 1))
    out, _ = T.translate(img, None, tf.constant(1.0), tf.constant(0.0))
    np.testing.assert_allclose(out.numpy()[:, 1:, 0], img.numpy()[:, :3, 0])


@pytest.mark.parametrize("op", ["rotation", "zoom", "translation"])
def test_geometric_ops_keep_mask_class_set(op):
    img = T.to_unit(tf.constant(gradient_image(12, 12)))
    fn = {"rotation": T.random_rotation, "zoom": T.random_zoom,
          "translation": T.random_translation}[op]  # fmt: skip
    out, mask = fn(img, _mask(), SEED, 0.1)
    assert out.shape == (12, 12, 3) and mask.dtype == tf.int32
    assert set(np.unique(mask.numpy())) <= {0, 1, 2}  # nearest: no invented classes
    assert 1 in mask.numpy() and 2 in mask.numpy()


# ------------------------------------------------------------------ photometric
def test_photometric_ops_change_pixels_in_range():
    img = T.to_unit(tf.constant(gradient_image(12, 12)))
    for fn, arg in [(T.random_brightness, 0.3), (T.random_contrast, 0.5),
                    (T.random_saturation, 0.5), (T.random_hue, 0.2)]:  # fmt: skip
        out = fn(img, SEED, arg).numpy()
        assert out.shape == (12, 12, 3) and out.min() >= 0 and out.max() <= 1
        assert not np.allclose(out, img.numpy()), fn.__name__


def test_saturation_leaves_gray_alone():
    gray = tf.fill([4, 4, 1], 0.5)
    np.testing.assert_array_equal(T.random_saturation(gray, SEED, 0.5).numpy(), gray.numpy())


def test_random_erasing_replaces_a_rectangle():
    img = tf.zeros([20, 20, 3])
    out = T.random_erasing(img, SEED, probability=1.0).numpy()
    changed = np.argwhere(out.any(-1))
    assert len(changed) > 0
    (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
    # the changed pixels fill their bounding box: a rectangle of noise
    assert out[y0 : y1 + 1, x0 : x1 + 1].any(-1).mean() > 0.95
    np.testing.assert_array_equal(T.random_erasing(img, SEED, 0.0).numpy(), img.numpy())


def test_randaugment_shape_range_and_change():
    img = T.to_unit(tf.constant(gradient_image(16, 16)))
    outs = [T.randaugment(img, tf.constant([i, 3], tf.int64), 2, 9).numpy() for i in range(6)]
    for out in outs:
        assert out.shape == (16, 16, 3) and out.min() >= 0 and out.max() <= 1
    assert sum(not np.allclose(o, img.numpy()) for o in outs) >= 3


# ------------------------------------------------------------------ crops
def test_random_resized_crop_from_jpeg_bytes():
    data = tf.constant(encode(Image.fromarray(gradient_image(40, 60)), "JPEG", quality=95))
    out = T.decode_random_crop(data, 3, SEED, (16, 16), scale=(0.2, 0.4)).numpy()
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    png = tf.constant(encode(Image.fromarray(gradient_image(40, 60)), "PNG"))
    assert T.decode_random_crop(png, 1, SEED, (8, 8)).shape == (8, 8, 1)


def test_random_resized_crop_moves_mask_with_image():
    m = np.zeros((20, 20), np.int32)
    m[:, 10:] = 1
    img = np.where(m[..., None] == 1, 255, 0).astype(np.uint8).repeat(3, -1)
    out, mask = T.random_resized_crop(tf.constant(img), tf.constant(m), SEED, (10, 10),
                                      scale=(0.3, 0.6))  # fmt: skip
    # white pixels exactly where the mask says class 1 (nearest for the mask)
    agree = (out.numpy()[..., 0] > 127) == (mask.numpy() == 1)
    assert agree.mean() > 0.9


# ------------------------------------------------------------------ batch level
def test_mixup_and_cutmix_labels_sum_to_one():
    images = tf.stack([tf.zeros([8, 8, 1]), tf.ones([8, 8, 1])])
    labels = tf.one_hot([0, 1], 2)
    for fn in (T.mixup, T.cutmix):
        x, y = fn(images, labels, SEED, 1.0)
        np.testing.assert_allclose(y.numpy().sum(-1), [1.0, 1.0], rtol=1e-6)
        # the label weight of class 1 equals the share of "ones" pixels
        np.testing.assert_allclose(x.numpy().mean(axis=(1, 2, 3)), y.numpy()[:, 1], atol=1e-5)
