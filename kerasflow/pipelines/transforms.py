"""Image transforms used inside ``tf.data`` maps.

``preprocess`` is the deterministic part (resize, normalise) shared by the
training pipeline and the serving signature: one definition for both.
"""

from __future__ import annotations

import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Convert a uint8 HWC image with 1, 3 or 4 channels to ``channels`` (1 or 3)."""
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 4:
        image = image[..., :3]
        have = 3
    if channels == 1 and have == 3:
        return tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), image.dtype)
    if channels == 3 and have == 1:
        return tf.image.grayscale_to_rgb(image)
    return image


def resize(image: tf.Tensor, size) -> tf.Tensor:
    """Resize to ``size`` (height, width) with bilinear interpolation, float32 output."""
    image = tf.cast(image, tf.float32)
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def normalize(image: tf.Tensor, mode: str) -> tf.Tensor:
    """Scale a 0..255 float image: ``unit`` 0..1, ``symmetric`` -1..1, ``imagenet`` mean/std."""
    image = tf.cast(image, tf.float32)
    if mode == "unit":
        return image / 255.0
    if mode == "symmetric":
        return image / 127.5 - 1.0
    if mode == "imagenet":
        channels = image.shape[-1]
        mean = tf.constant(IMAGENET_MEAN[:channels] if channels == 3 else [0.449], tf.float32)
        std = tf.constant(IMAGENET_STD[:channels] if channels == 3 else [0.226], tf.float32)
        return (image / 255.0 - mean) / std
    if mode == "none":
        return image
    raise ValueError(f"Unknown normalize mode. Received: mode={mode!r}")


def preprocess(image: tf.Tensor, data_config) -> tf.Tensor:
    """The deterministic preprocessing of one decoded uint8 image (HWC).

    Channel policy, resize to ``data.image_size``, normalise. The serving
    signature calls this same function.
    """
    image = to_channels(image, data_config.channels)
    image = resize(image, data_config.image_size)
    return normalize(image, data_config.normalize)


def augmentation_layers(augment, seed: int):
    """Keras preprocessing layers for the random training augmentation, or [] if none."""
    from keras import layers

    out = []
    if augment.horizontal_flip or augment.vertical_flip:
        mode = "horizontal_and_vertical" if augment.horizontal_flip and augment.vertical_flip else (
            "horizontal" if augment.horizontal_flip else "vertical"
        )
        out.append(layers.RandomFlip(mode, seed=seed))
    if augment.rotation:
        out.append(layers.RandomRotation(augment.rotation, fill_mode="constant", seed=seed + 1))
    if augment.zoom:
        out.append(layers.RandomZoom(augment.zoom, fill_mode="constant", seed=seed + 2))
    if augment.translation:
        t = augment.translation
        out.append(layers.RandomTranslation(t, t, fill_mode="constant", seed=seed + 3))
    if augment.brightness:
        out.append(layers.RandomBrightness(augment.brightness, value_range=(0, 1), seed=seed + 4))
    if augment.contrast:
        out.append(layers.RandomContrast(augment.contrast, seed=seed + 5))
    return out
