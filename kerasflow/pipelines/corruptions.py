"""Common image corruptions as tf.data-ready TensorFlow ops, at five severities each.

In the spirit of ImageNet-C (Hendrycks & Dietterich, 2019): the same
corruption families and severity parameters, applied to pipeline pixels
(float 0..255, ``(H, W, C)`` or ``(N, H, W, C)``) instead of 0..1 images.

- ``gaussian_noise``: additive N(0, s) with s = [0.08, 0.12, 0.18, 0.26, 0.38] x 255.
- ``shot_noise``: Poisson photon noise, ``Poisson(x/255 * c) / c * 255``, c = [60, 25, 12, 5, 3].
- ``gaussian_blur``: sigma = [1, 2, 3, 4, 6] pixels (spatial, see below).
- ``defocus_blur``: an anti-aliased disk (defocus) kernel of radius [3, 4, 6, 8, 10] (spatial).
- ``jpeg``: JPEG re-encoding at quality [25, 18, 15, 10, 7].
- ``brightness``: +[0.1, 0.2, 0.3, 0.4, 0.5] x 255 on the HSV value (on the gray level of a
  single-channel image).
- ``contrast``: pixels pulled to the image's per-channel mean by factors [0.4, 0.3, 0.2, 0.1, 0.05].
- ``pixelate``: down to [0.6, 0.5, 0.4, 0.3, 0.25] of the side (box average), back with
  nearest neighbours.

Spatial sizes (the blur sigmas and radii) are ImageNet-C's at 224 pixels,
scaled to the image's shorter side; a side under 64 pixels is scaled as 64
(:data:`MIN_SCALE_SIDE`), so that small images (digits at 16 pixels) still blur
visibly instead of not at all.

Random corruptions draw from stateless generators keyed by ``seed``: the
same seed gives the same corrupted images in every run, whatever the batch
order (:func:`corrupt_dataset` folds each batch's index into the seed).

Example:
    >>> from kerasflow.pipelines import corruptions
    >>> noisy = corruptions.corrupt(images, "gaussian_noise", severity=3, seed=(0, 1))
    >>> ds = corruptions.corrupt_dataset(test_ds, "jpeg", 5, seed=0)
"""

from __future__ import annotations

import math

import tensorflow as tf

from kerasflow.errors import ConfigError

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 224
MIN_SCALE_SIDE = 64

PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "defocus_blur": (3, 4, 6, 8, 10),
    "jpeg": (25, 18, 15, 10, 7),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
}
CORRUPTIONS = tuple(PARAMETERS)
NOISE = ("gaussian_noise", "shot_noise")
BLUR = ("gaussian_blur", "defocus_blur")


def spatial_scale(height: int, width: int) -> float:
    """The factor applied to ImageNet-C's pixel sizes for an image of this size."""
    return max(min(int(height), int(width)), MIN_SCALE_SIDE) / REFERENCE_SIDE


def parameter(name: str, severity: int) -> float:
    """The corruption's parameter at ``severity`` (1..5), before any spatial scaling.

    Raises:
        ConfigError: an unknown corruption or a severity outside 1..5.
    """
    if name not in PARAMETERS:
        raise ConfigError(
            f"Unknown corruption {name!r}. Use one of: {', '.join(CORRUPTIONS)}. Received: {name!r}"
        )
    if int(severity) not in SEVERITIES:
        raise ConfigError(f"Corruption severity must be 1..5. Received: severity={severity!r}")
    return float(PARAMETERS[name][int(severity) - 1])


# ----------------------------------------------------------------- kernels
def _gaussian_kernel(sigma: float, max_radius: int) -> tf.Tensor:
    radius = min(max(1, math.ceil(3 * sigma)), max_radius)
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-(t**2) / (2 * sigma**2))
    k = k[:, None] * k[None, :]
    return k / tf.reduce_sum(k)


def _disk_kernel(radius: float, max_radius: int, supersample: int = 8) -> tf.Tensor:
    """A disk's area over each pixel (anti-aliased: a fractional radius still blurs)."""
    r = min(max(1, math.ceil(radius)), max_radius)
    sub = (tf.range(supersample, dtype=tf.float32) + 0.5) / supersample - 0.5
    t = tf.reshape(tf.range(-r, r + 1, dtype=tf.float32)[:, None] + sub[None, :], [-1])
    inside = tf.cast(t[:, None] ** 2 + t[None, :] ** 2 <= radius**2, tf.float32)
    size = 2 * r + 1
    k = tf.reduce_sum(tf.reshape(inside, [size, supersample, size, supersample]), axis=[1, 3])
    return k / tf.reduce_sum(k)


def _convolve(images: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Depthwise 2-D convolution with symmetric padding (no dark border)."""
    half = int(kernel.shape[0]) // 2
    padded = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], mode="SYMMETRIC")
    filt = tf.tile(kernel[:, :, None, None], [1, 1, images.shape[-1], 1])
    return tf.nn.depthwise_conv2d(padded, filt, [1, 1, 1, 1], "VALID")


# ----------------------------------------------------------------- corruptions
def _noise(images, name, c, seed):
    if name == "gaussian_noise":
        return images + tf.random.stateless_normal(tf.shape(images), seed) * (c * 255.0)
    lam = images / 255.0 * c
    return tf.random.stateless_poisson(tf.shape(images), seed, lam, dtype=tf.float32) / c * 255.0


def _jpeg(images, quality: int):
    def one(image):
        encoded = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        if encoded.shape[-1] not in (1, 3):  # JPEG has gray and RGB only: code the colour part
            colour = tf.image.adjust_jpeg_quality(encoded[..., :3], quality)
            return tf.concat([tf.cast(colour, tf.float32), image[..., 3:]], axis=-1)
        return tf.cast(tf.image.adjust_jpeg_quality(encoded, quality), tf.float32)

    return tf.map_fn(one, images, fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32))


def _brightness(images, c):
    if images.shape[-1] == 3:
        hsv = tf.image.rgb_to_hsv(images / 255.0)
        v = tf.clip_by_value(hsv[..., 2:] + c, 0.0, 1.0)
        return tf.image.hsv_to_rgb(tf.concat([hsv[..., :2], v], axis=-1)) * 255.0
    return images + c * 255.0


def _contrast(images, c):
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)  # per channel, as ImageNet-C
    return (images - mean) * c + mean


def _pixelate(images, c):
    h, w = int(images.shape[1]), int(images.shape[2])
    small = (max(1, round(h * c)), max(1, round(w * c)))
    down = tf.image.resize(images, small, method="area")
    return tf.image.resize(down, (h, w), method="nearest")


def corrupt(images, name: str, severity: int, seed=(0, 0)) -> tf.Tensor:
    """``images`` (0..255, ``(H, W, C)`` or ``(N, H, W, C)``, static H, W, C) corrupted.

    Args:
        name: one of :data:`CORRUPTIONS`.
        severity: 1 (mild) .. 5 (severe).
        seed: a stateless seed, two integers (noise corruptions draw from it).

    Returns:
        pixels of the same shape, clipped to 0..255: uint8 (rounded) for uint8
        images, else float32.
    """
    c = parameter(name, severity)
    images = tf.convert_to_tensor(images)
    dtype = images.dtype
    images = tf.cast(images, tf.float32)
    single = images.shape.rank == 3
    x = images[None] if single else images
    h, w = int(x.shape[1]), int(x.shape[2])
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if name in NOISE:
        out = _noise(x, name, c, seed)
    elif name == "gaussian_blur":
        out = _convolve(x, _gaussian_kernel(c * spatial_scale(h, w), min(h, w) - 1))
    elif name == "defocus_blur":
        out = _convolve(x, _disk_kernel(c * spatial_scale(h, w), min(h, w) - 1))
    elif name == "jpeg":
        out = _jpeg(x, int(c))
    elif name == "brightness":
        out = _brightness(x, c)
    elif name == "contrast":
        out = _contrast(x, c)
    else:
        out = _pixelate(x, c)
    out = tf.clip_by_value(out, 0.0, 255.0)
    if dtype.is_integer:  # uint8 pipeline pixels stay uint8, as a corrupted file would decode
        out = tf.cast(tf.round(out), dtype)
    return out[0] if single else out


def corrupt_dataset(dataset: tf.data.Dataset, name: str, severity: int, seed: int = 0):
    """A dataset of ``(images, target)`` with every image corrupted (targets untouched).

    All corruptions keep the geometry, so masks and boxes stay valid. Each
    element's noise is drawn from ``(seed, element index)``: deterministic.
    """
    parameter(name, severity)  # fail early, outside the graph
    key = int(seed) * 1000 + CORRUPTIONS.index(name) * 10 + int(severity)

    def apply(index, element):
        image, target = element
        return corrupt(image, name, severity, tf.stack([tf.constant(key, tf.int64), index])), target

    return dataset.enumerate().map(apply, num_parallel_calls=tf.data.AUTOTUNE)


class TransformedData:
    """A data object whose ``dataset()`` yields images passed through ``fn(dataset)``.

    Wraps anything with ``dataset(split, training=None, batch=True)`` (prepared
    data, a task's training data); every other attribute is the wrapped one's.
    """

    def __init__(self, data, fn):
        self.data = data
        self.fn = fn

    def dataset(self, split: str, training: bool | None = None, batch: bool = True, **kwargs):
        return self.fn(self.data.dataset(split, training, batch, **kwargs))

    def __getattr__(self, name):
        return getattr(self.data, name)


def corrupted_data(data, name: str, severity: int, seed: int = 0) -> TransformedData:
    """``data`` whose datasets are corrupted by ``name`` at ``severity`` (see :func:`corrupt_dataset`)."""
    return TransformedData(data, lambda ds: corrupt_dataset(ds, name, severity, seed))
