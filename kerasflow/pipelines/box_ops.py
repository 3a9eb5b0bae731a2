"""Box-aware image transforms for detection, as small pure TF functions.

The box format used everywhere inside kerasflow is ``[ymin, xmin, ymax, xmax]``
as fractions (0..1) of the current image's height and width, float32, with
``classes`` int32 class ids beside them. It is TensorFlow's own convention
(``tf.image.crop_and_resize``, ``combined_non_max_suppression``,
``draw_bounding_boxes``), so no conversion is needed in the graph, and it does
not change when an image is resized. Sources convert on load (COCO
``[x, y, w, h]`` pixels, VOC ``xmin..ymax`` pixels); serving converts back to
input-image pixels.

Every geometric op moves the image and its boxes together; ops that cut boxes
(crop) apply one policy: ``clip`` keeps the part inside the image when at least
``min_visible`` of the box's area remains, ``drop`` removes any box not wholly
inside. Random ops are stateless: they take a ``seed`` of shape ``[2]``.
Padding to a fixed ``max_boxes`` (class ``-1``) makes batches rectangular.
"""

from __future__ import annotations

import tensorflow as tf

from kerasflow.pipelines import transforms as T

PAD_CLASS = -1


def box_area(boxes: tf.Tensor) -> tf.Tensor:
    """Area of ``[..., 4]`` boxes (0 for inverted boxes)."""
    h = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    w = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return h * w


def letterbox(image: tf.Tensor, boxes: tf.Tensor, size, mode: str = "pad", **resize_kw):
    """Resize a uint8 image to ``size`` and move its boxes to match.

    ``pad`` keeps the aspect ratio and pads centred (the pipeline's ``resize:
    pad``); ``stretch`` ignores it. Returns ``(image, boxes, window)`` where
    ``window`` ``[top, left, height, width]`` is the resized image's place in
    the output as fractions, which maps predictions back to the input image.
    """
    if mode not in ("pad", "stretch"):
        raise ValueError(f"Detection resize must be 'pad' or 'stretch'. Received: mode={mode!r}")
    size = (int(size[0]), int(size[1]))
    out = T.resize_image(image, size, mode, **resize_kw)
    if mode == "stretch":
        return out, boxes, tf.constant([0.0, 0.0, 1.0, 1.0])
    nh, nw = T.padded_size(image, size)
    top = tf.cast((size[0] - nh) // 2, tf.float32) / size[0]
    left = tf.cast((size[1] - nw) // 2, tf.float32) / size[1]
    height, width = tf.cast(nh, tf.float32) / size[0], tf.cast(nw, tf.float32) / size[1]
    window = tf.stack([top, left, height, width])
    scale = tf.stack([height, width, height, width])
    offset = tf.stack([top, left, top, left])
    return out, boxes * scale + offset, window


def unletterbox(boxes: tf.Tensor, window: tf.Tensor, image_hw: tf.Tensor) -> tf.Tensor:
    """Boxes predicted on a letterboxed image -> pixels of the original image.

    Args:
        boxes: ``[..., D, 4]`` fractions of the model input.
        window: ``[..., 4]`` ``[top, left, height, width]`` from :func:`letterbox`.
        image_hw: ``[..., 2]`` the original images' ``[height, width]``.
    """
    window = tf.cast(window, tf.float32)[..., None, :]
    hw = tf.cast(image_hw, tf.float32)[..., None, :]
    offset = tf.stack([window[..., 0], window[..., 1], window[..., 0], window[..., 1]], -1)
    scale = tf.stack([window[..., 2], window[..., 3], window[..., 2], window[..., 3]], -1)
    pixels = tf.stack([hw[..., 0], hw[..., 1], hw[..., 0], hw[..., 1]], -1)
    unit = tf.clip_by_value((tf.cast(boxes, tf.float32) - offset) / scale, 0.0, 1.0)
    return unit * pixels


def flip_boxes(boxes: tf.Tensor, horizontal: bool = True) -> tf.Tensor:
    """Mirror boxes left-right (or top-bottom)."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    if horizontal:
        return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
    return tf.stack([1.0 - ymax, xmin, 1.0 - ymin, xmax], axis=-1)


def random_flip(image, boxes, seed, horizontal: bool = True):
    """Flip image and boxes together with probability 0.5."""
    do = T.uniform(seed) < 0.5
    axis = 1 if horizontal else 0
    image = tf.cond(do, lambda: tf.reverse(image, [axis]), lambda: image)
    boxes = tf.cond(do, lambda: flip_boxes(boxes, horizontal), lambda: boxes)
    return image, boxes


def crop_boxes(boxes, classes, window, policy: str = "clip", min_visible: float = 0.3):
    """Boxes seen through ``window`` ``[y0, x0, y1, x1]`` (fractions), in the window's frame.

    Returns ``(boxes, classes)`` of the kept boxes: ``clip`` clips to the
    window and keeps a box when at least ``min_visible`` of its area remains;
    ``drop`` keeps only boxes wholly inside the window.
    """
    if policy not in ("clip", "drop"):
        raise ValueError(f"box policy must be 'clip' or 'drop'. Received: policy={policy!r}")
    window = tf.cast(window, tf.float32)
    origin = tf.stack([window[0], window[1], window[0], window[1]])
    extent = tf.stack([window[2] - window[0], window[3] - window[1]] * 2)
    moved = (boxes - origin) / extent
    clipped = tf.clip_by_value(moved, 0.0, 1.0)
    area = box_area(moved)
    kept_area = box_area(clipped)
    if policy == "clip":
        keep = (kept_area > 0) & (kept_area >= min_visible * area - 1e-9)
        out = clipped
    else:
        keep = (area > 0) & tf.reduce_all(tf.abs(moved - clipped) < 1e-6, axis=-1)
        out = moved
    return tf.boolean_mask(out, keep), tf.boolean_mask(classes, keep)


def crop_and_scale(image, boxes, classes, window, size, policy="clip", min_visible=0.3):
    """Crop ``window`` (fractions; may reach outside 0..1 to zoom out, padding with 0) and
    resize it to ``size``; boxes follow by :func:`crop_boxes`. ``image`` is float."""
    size = (int(size[0]), int(size[1]))
    window = tf.cast(window, tf.float32)
    out = tf.image.crop_and_resize(
        tf.cast(image, tf.float32)[None], window[None], [0], size, extrapolation_value=0.0
    )[0]
    boxes, classes = crop_boxes(boxes, classes, window, policy, min_visible)
    return out, boxes, classes


def random_crop_scale(
    image, boxes, classes, seed, scale=(0.6, 1.0), policy="clip", min_visible=0.3
):
    """A random window of side ``s ~ U(scale)`` of the image (aspect kept; ``s > 1``
    zooms out), resized back to the image's size. Boxes are cut by ``policy``."""
    seeds = T.split_seed(seed, 2)
    s1, s2 = seeds[0], seeds[1]
    side = T.uniform(s1, scale[0], scale[1])
    corner = T.uniform(s2, 0.0, 1.0, shape=(2,))
    low, high = tf.minimum(0.0, 1.0 - side), tf.maximum(0.0, 1.0 - side)
    y0 = low + corner[0] * (high - low)
    x0 = low + corner[1] * (high - low)
    window = tf.stack([y0, x0, y0 + side, x0 + side])
    size = (image.shape[0], image.shape[1])
    if size[0] is None or size[1] is None:
        raise ValueError(f"random_crop_scale needs a static image size. Received: {image.shape}")
    return crop_and_scale(image, boxes, classes, window, size, policy, min_visible)


def photometric(image, seed, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """The pipeline's photometric ops on a 0..1 float image (boxes do not move)."""
    seeds = T.split_seed(seed, 4)
    if brightness:
        image = T.random_brightness(image, seeds[0], brightness)
    if contrast:
        image = T.random_contrast(image, seeds[1], contrast)
    if saturation:
        image = T.random_saturation(image, seeds[2], saturation)
    if hue:
        image = T.random_hue(image, seeds[3], hue)
    return image


def pad_boxes(boxes, classes, max_boxes: int):
    """Pad (or truncate) to exactly ``max_boxes``: boxes ``0``, classes ``-1``."""
    n = tf.minimum(tf.shape(boxes)[0], max_boxes)
    boxes = tf.cast(boxes[:n], tf.float32)
    classes = tf.cast(classes[:n], tf.int32)
    pad = max_boxes - n
    boxes = tf.pad(boxes, [[0, pad], [0, 0]])
    classes = tf.pad(classes, [[0, pad]], constant_values=PAD_CLASS)
    boxes.set_shape([max_boxes, 4])
    classes.set_shape([max_boxes])
    return boxes, classes


def unpad_boxes(boxes, classes):
    """Drop the padding rows (class ``-1``) of one image's boxes."""
    keep = classes >= 0
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)
