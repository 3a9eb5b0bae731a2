"""The three serving signatures of an exported model, as TensorFlow functions.

* ``serving_default`` (:data:`BYTES_SIGNATURE`): ``image_bytes``, a ``[None]``
  string tensor of encoded JPEG/PNG/BMP/GIF files.
* ``predict_images`` (:data:`IMAGES_SIGNATURE`): ``images``, a
  ``[None, None, None, None]`` uint8 batch of decoded images of any size and
  1 to 4 channels.
* ``predict_tensor`` (:data:`TENSOR_SIGNATURE`): ``inputs``, the model's own
  float32 input ``[None, H, W, C]``: pixels 0..255, already decoded and resized
  (the model applies ``data.normalize`` itself).

Classification signatures return ``probabilities`` ``[N, K]``, ``class_id``
``[N]`` (int64) and ``class_name`` ``[N]`` (string); segmentation signatures
return ``probabilities`` ``[N, H, W, K]`` and ``class_map`` ``[N, H, W]``
(int32) at the model's resolution.

Decoding and preprocessing are the training pipeline's own functions
(:func:`kerasflow.pipelines.transforms.decode_image` and
:func:`~kerasflow.pipelines.transforms.preprocess`), imported rather than
re-written, so training and serving cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from kerasflow.pipelines.transforms import decode_image, preprocess, to_channels

BYTES_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "predict_images"
TENSOR_SIGNATURE = "predict_tensor"
SIGNATURES = (BYTES_SIGNATURE, IMAGES_SIGNATURE, TENSOR_SIGNATURE)


def _with_static_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Apply the pipeline's channel policy to a uint8 image whose channel count is only known at run time."""
    have = tf.shape(image)[-1]
    check = tf.debugging.Assert(
        tf.logical_and(have >= 1, have <= 4),
        ["images must have 1 to 4 channels (gray, gray+alpha, RGB, RGBA); received", have],
    )
    with tf.control_dependencies([check]):
        have = tf.identity(have)
    branches = [
        (lambda k=k: to_channels(tf.ensure_shape(image, [None, None, k]), channels))
        for k in (1, 2, 3, 4)
    ]
    return tf.switch_case(have - 1, branches)


def serving_functions(
    model, data_config, class_names: list[str], task: str = "classification"
) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The signature functions and their input specs, keyed by signature name.

    Args:
        model: a Keras model whose input is ``data.image_size`` x ``data.channels``
            pixels (0..255, scaled by its own first layer) and whose output is
            softmax probabilities.
        data_config: the run's :class:`kerasflow.config.DataConfig`.
        class_names: one name per output class.
        task: ``classification`` or ``segmentation``.
    """
    height, width = (int(v) for v in data_config.image_size)
    channels = int(data_config.channels)
    element = tf.TensorSpec([height, width, channels], tf.uint8)
    names = tf.constant([str(c) for c in class_names], dtype=tf.string)

    def outputs(x):
        probabilities = tf.cast(model(x, training=False), tf.float32)
        if task == "segmentation":
            class_map = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            return {"probabilities": probabilities, "class_map": class_map}
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(names, class_id),
        }

    def from_bytes(image_bytes):
        x = tf.map_fn(
            lambda data: preprocess(decode_image(data, channels), data_config),
            image_bytes,
            fn_output_signature=element,
        )
        return outputs(x)

    def from_images(images):
        x = tf.map_fn(
            lambda image: preprocess(_with_static_channels(image, channels), data_config),
            images,
            fn_output_signature=element,
        )
        return outputs(x)

    def from_tensor(inputs):
        return outputs(inputs)

    return {
        BYTES_SIGNATURE: (from_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        IMAGES_SIGNATURE: (
            from_images,
            [tf.TensorSpec([None, None, None, None], tf.uint8, name="images")],
        ),
        TENSOR_SIGNATURE: (
            from_tensor,
            [tf.TensorSpec([None, height, width, channels], tf.float32, name="inputs")],
        ),
    }
