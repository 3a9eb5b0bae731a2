"""Image transforms used inside ``tf.data`` maps: small pure TF functions.

Deterministic (shared by training and serving):
    ``decode_image`` -> ``to_channels`` -> ``center_crop`` -> ``resize_image``
    (-> uint8). ``preprocess`` chains them for one decoded image; the serving
    SavedModel calls the same function. Pipelines hand the model uint8 pixels:
    ``data.normalize`` is the model's first layer (:func:`input_scaling` gives
    its scale and offset), so batches are 4x smaller than float32 and the
    scaling runs with the model (on the accelerator, when there is one).

Random (training only, stateless: each takes a ``seed`` of shape ``[2]`` so a
pipeline seeded once gives fresh but reproducible values every epoch):
    geometric ops take ``(image, mask)`` and move both, the mask with nearest
    neighbour resampling; photometric ops take only the image. Images are
    float32 in 0..1 while they are augmented (:func:`to_unit`), then float32
    0..255 (:func:`from_unit`), not rounded.

Batch level: ``mixup`` and ``cutmix`` on ``(images, float labels)``: one-hot
class vectors or multi-hot label vectors, mixed like the pixels.

Segmentation masks are ``(H, W)`` int32 class ids throughout.
"""

from __future__ import annotations

import math

import tensorflow as tf

from kerasflow.pipelines import bmp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)


# --------------------------------------------------------------------------- decode
# libjpeg's accurate integer IDCT (JDCT_ISLOW), what Pillow decodes JPEG with: training,
# the SavedModel's image_bytes signature and LiteRT/ONNX serving (Pillow) see the same
# pixels. TensorFlow's default, the fast IDCT, differs from it by up to 43 grey levels
# (a mean of 0.3 to 3.6) on quality 50..100 files; see docs/export.md.
JPEG_DCT_METHOD = "INTEGER_ACCURATE"


def decode_jpeg(data: tf.Tensor) -> tf.Tensor:
    """Decode JPEG bytes to uint8 RGB with the accurate IDCT (the same pixels as Pillow)."""
    return tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD)


def _decode_other(data: tf.Tensor, formats) -> tf.Tensor:
    """PNG/GIF/BMP (or anything else) by ``tf.io.decode_image``, palette BMPs by bmp.py."""

    def decode(d):
        return tf.io.decode_image(d, channels=3, expand_animations=False)

    # TF's own decoder ignores a BMP's palette; bmp.py decodes palette BMPs.
    if formats is not None and "BMP" not in formats:
        return decode(data)
    return bmp.decode_palette_aware(data, decode)


def decode_image(data: tf.Tensor, channels: int, formats=None) -> tf.Tensor:
    """Decode JPEG/PNG/GIF/BMP bytes to a uint8 ``(H, W, channels)`` image.

    The channel policy: gray, gray+alpha, RGBA, palette and CMYK images all
    become ``channels`` (1 or 3); alpha is dropped; a GIF gives its first
    frame. Usable inside a ``tf.function`` (the serving signature uses it).
    JPEG is decoded with the accurate IDCT (:data:`JPEG_DCT_METHOD`), giving
    Pillow's pixels; other formats go through ``tf.io.decode_image``.

    ``formats``: the formats the bytes can be in (e.g. ``{"JPEG"}``, from the
    file scan), or None for any. Only JPEG: no format test at all; without
    ``JPEG``, no JPEG test; without ``BMP``, the palette-BMP check and its
    ``tf.cond`` are left out of the graph (about 20 us an image).

    Example:
        >>> image = decode_image(tf.io.read_file("cat.jpg"), channels=3)
    """
    data = tf.convert_to_tensor(data, tf.string)
    # channels=3 for every format: a CMYK JPEG, a BMP or a GIF cannot be decoded
    # straight to gray; gray is taken from RGB below.
    if formats is not None and set(formats) <= {"JPEG"}:
        image = decode_jpeg(data)
    elif formats is not None and "JPEG" not in formats:
        image = _decode_other(data, formats)
    else:
        image = bmp.cond_taken_branch_only(
            tf.io.is_jpeg(data), lambda: decode_jpeg(data), lambda: _decode_other(data, formats)
        )
    image.set_shape([None, None, 3])
    return to_channels(image, channels)


def decode_mask(data: tf.Tensor) -> tf.Tensor:
    """Decode a grayscale PNG class-index mask to ``(H, W)`` int32 class ids."""
    mask = tf.io.decode_png(data, channels=1)
    return tf.cast(mask[..., 0], tf.int32)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Convert a uint8 HWC image with 1 to 4 channels to ``channels`` (1 or 3)."""
    have = image.shape[-1]
    if have is None:
        raise ValueError(f"to_channels needs a static channel count. Received: {image.shape}")
    if have in (2, 4):  # gray+alpha, RGBA: drop alpha, like PIL's convert
        image = image[..., : have - 1]
        have -= 1
    if have == channels:
        return image
    if channels == 1:
        gray = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
        return tf.cast(tf.clip_by_value(tf.round(gray), 0, 255), image.dtype)
    return tf.image.grayscale_to_rgb(image)


# --------------------------------------------------------------------------- geometry
def _as_uint8(image: tf.Tensor, bounded: bool = False) -> tf.Tensor:
    """Round a 0..255 float image to uint8; ``bounded``: values are known to be in range."""
    if image.dtype == tf.uint8:
        return image
    if bounded:  # one pass instead of three: round half up, no clipping needed
        return tf.cast(image + 0.5, tf.uint8)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def center_crop(image: tf.Tensor, fraction: float, mask: tf.Tensor | None = None):
    """Keep the central ``fraction`` of height and width (of image and mask)."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    ch = tf.maximum(1, tf.cast(tf.round(tf.cast(h, tf.float32) * fraction), tf.int32))
    cw = tf.maximum(1, tf.cast(tf.round(tf.cast(w, tf.float32) * fraction), tf.int32))
    top, left = (h - ch) // 2, (w - cw) // 2
    image = image[top : top + ch, left : left + cw]
    if mask is None:
        return image
    return image, mask[top : top + ch, left : left + cw]


def _crop_to_aspect(image, size, mask=None):
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    target = size[1] / size[0]
    ch = tf.cast(tf.minimum(h, tf.round(w / target)), tf.int32)
    cw = tf.cast(tf.minimum(w, tf.round(h * target)), tf.int32)
    ch, cw = tf.maximum(ch, 1), tf.maximum(cw, 1)
    top, left = (shape[0] - ch) // 2, (shape[1] - cw) // 2
    image = image[top : top + ch, left : left + cw]
    if mask is not None:
        mask = mask[top : top + ch, left : left + cw]
    return image, mask


def padded_size(image, size):
    """``(height, width)`` of ``image`` scaled to fit inside ``size`` keeping its aspect."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.minimum(size[0] / h, size[1] / w)
    nh = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, size[0])
    nw = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, size[1])
    return nh, nw


def resize_image(
    image: tf.Tensor,
    size,
    mode: str = "stretch",
    interpolation: str = "bilinear",
    antialias: bool = False,
) -> tf.Tensor:
    """Resize a uint8 HWC image to ``size`` (height, width); returns uint8.

    Modes: ``stretch`` (ignore aspect), ``pad`` (keep aspect, pad with black,
    centred), ``crop`` (keep aspect, centre-crop the excess).
    """
    size = (int(size[0]), int(size[1]))
    if mode == "crop":
        image, _ = _crop_to_aspect(image, size)
    if mode == "pad":
        nh, nw = padded_size(image, size)
        inner = tf.image.resize(image, tf.stack([nh, nw]), interpolation, antialias=antialias)
        out = tf.image.pad_to_bounding_box(
            _as_uint8(inner), (size[0] - nh) // 2, (size[1] - nw) // 2, size[0], size[1]
        )
    elif mode in ("stretch", "crop"):
        # Bilinear, area and nearest of uint8 pixels stay within 0..255 (bicubic overshoots).
        bounded = interpolation != "bicubic" and not antialias and image.dtype == tf.uint8
        resized = tf.image.resize(image, size, interpolation, antialias=antialias)
        out = _as_uint8(resized, bounded)
    else:
        raise ValueError(f"Unknown resize mode. Received: mode={mode!r}")
    out.set_shape([size[0], size[1], image.shape[-1]])
    return out


def resize_mask(mask: tf.Tensor, size, mode: str = "stretch") -> tf.Tensor:
    """Resize an ``(H, W)`` int32 mask with nearest neighbour, the same geometry as the image.

    Padding (``mode: pad``) uses class 0.
    """
    size = (int(size[0]), int(size[1]))
    m = mask[..., None]
    if mode == "crop":
        m, _ = _crop_to_aspect(m, size)
    if mode == "pad":
        nh, nw = padded_size(m, size)
        inner = tf.image.resize(m, tf.stack([nh, nw]), "nearest")
        m = tf.image.pad_to_bounding_box(
            inner, (size[0] - nh) // 2, (size[1] - nw) // 2, size[0], size[1]
        )
    else:
        m = tf.image.resize(m, size, "nearest")
    m = tf.cast(m[..., 0], tf.int32)
    m.set_shape(size)
    return m


def deterministic(image: tf.Tensor, data_config, mask: tf.Tensor | None = None):
    """Channel policy, centre crop and resize of one decoded image (and mask); uint8 out."""
    cfg = data_config
    image = to_channels(image, cfg.channels)
    if cfg.center_crop:
        if mask is None:
            image = center_crop(image, cfg.center_crop)
        else:
            image, mask = center_crop(image, cfg.center_crop, mask)
    out = resize_image(image, cfg.image_size, cfg.resize, cfg.interpolation, cfg.antialias)
    if mask is None:
        return out
    return out, resize_mask(mask, cfg.image_size, cfg.resize)


# --------------------------------------------------------------------------- scaling
def to_unit(image: tf.Tensor) -> tf.Tensor:
    """uint8 0..255 -> float32 0..1."""
    return tf.cast(image, tf.float32) * (1.0 / 255.0)


def from_unit(image: tf.Tensor) -> tf.Tensor:
    """float 0..1 -> float32 0..255, the pixel scale that models take.

    Not rounded to uint8: rounded, the default digits config came out worse in
    every paired seed where the results differed (13 against 9 test errors over
    8 seeds; small enough to be chance, but unrounded is what it trained on before).
    """
    return tf.cast(image, tf.float32) * 255.0


def input_scaling(data_config, channels: int | None = None):
    """``(scale, offset)`` per channel: ``x * scale + offset`` is ``data.normalize`` of pixels ``x``.

    The affine map of 0..255 pixels that the model's first layer
    (``keras.layers.Rescaling``) applies: ``unit`` 0..1, ``symmetric`` -1..1,
    ``imagenet`` or ``mean_std`` ``(x / 255 - mean) / std`` per channel,
    ``none`` 0..255 unchanged.

    Example:
        >>> input_scaling(cfg.data)  # normalize: unit, 3 channels
        ([0.00392..., 0.00392..., 0.00392...], [0.0, 0.0, 0.0])
    """
    k = int(data_config.channels if channels is None else channels)
    mode = data_config.normalize
    if mode == "unit":
        scale, offset = [1.0 / 255.0] * k, [0.0] * k
    elif mode == "symmetric":
        scale, offset = [2.0 / 255.0] * k, [-1.0] * k
    elif mode == "none":
        scale, offset = [1.0] * k, [0.0] * k
    elif mode in ("imagenet", "mean_std"):
        mean, std = _mean_std(data_config, k)
        scale = [1.0 / (255.0 * s) for s in std]
        offset = [-m / s for m, s in zip(mean, std, strict=True)]
    else:
        raise ValueError(f"Unknown normalize mode. Received: mode={mode!r}")
    return scale, offset


def to_display(images) -> tf.Tensor:
    """Pipeline pixels (uint8 or float 0..255) -> float32 0..1, for figures."""
    return tf.clip_by_value(tf.cast(images, tf.float32) * (1.0 / 255.0), 0.0, 1.0)


def _mean_std(data_config, channels: int):
    if data_config.normalize == "imagenet":
        return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GRAY_MEAN, GRAY_STD)
    return tuple(data_config.mean), tuple(data_config.std)


def preprocess(image: tf.Tensor, data_config) -> tf.Tensor:
    """The deterministic preprocessing of one decoded uint8 image (HWC); uint8 out.

    Channel policy, centre crop and resize to ``data.image_size`` (rounded to
    uint8), exactly what the training pipeline hands the model; the model's
    own first layer applies ``data.normalize``. A pure TF function of one
    image: the serving signature calls it inside a ``tf.function``.

    Example:
        >>> x = preprocess(decode_image(tf.io.read_file("a.png"), 3), cfg.data)
    """
    return deterministic(image, data_config)


# --------------------------------------------------------------------------- random
def split_seed(seed: tf.Tensor, num: int) -> tf.Tensor:
    """``num`` independent stateless seeds ``[num, 2]`` from one."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


def uniform(seed, low=0.0, high=1.0, shape=()):
    """Stateless uniform floats in ``[low, high)`` of ``shape`` from a ``[2]`` seed."""
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def flip(image, mask, seed, horizontal: bool = True):
    """Mirror image and mask left-right (or up-down) with probability 0.5."""
    do = uniform(seed) < 0.5
    axis = 1 if horizontal else 0

    def mirrored(x):
        return tf.cond(do, lambda: tf.reverse(x, [axis]), lambda: x)

    return mirrored(image), (None if mask is None else mirrored(mask))


def _affine(image, mask, matrix, fill_mode="REFLECT"):
    """Resample with ``input = matrix @ output`` (3x3, pixel coordinates x, y)."""
    flat = tf.reshape(matrix, [9])[:8] / matrix[2, 2]
    flat = tf.cast(flat[None], tf.float32)
    shape = tf.shape(image)[:2]

    def warp(x, interpolation):
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=x[None], transforms=flat, output_shape=shape,
            fill_value=0.0, interpolation=interpolation, fill_mode=fill_mode,
        )  # fmt: skip
        return out[0]

    image = warp(image, "BILINEAR")
    if mask is not None:
        mask = warp(mask[..., None], "NEAREST")[..., 0]
    return image, mask


def _about_center(image, linear):
    """3x3 matrix applying 2x2 ``linear`` about the image centre (input = M @ output)."""
    shape = tf.cast(tf.shape(image), tf.float32)
    cx, cy = (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0
    a, b, c, d = linear[0][0], linear[0][1], linear[1][0], linear[1][1]
    return tf.stack(
        [
            tf.stack([a, b, cx - a * cx - b * cy]),
            tf.stack([c, d, cy - c * cx - d * cy]),
            tf.constant([0.0, 0.0, 1.0]),
        ]
    )


def rotate(image, mask, angle):
    """Rotate by ``angle`` radians about the centre (counter-clockwise on screen)."""
    cos, sin = tf.cos(angle), tf.sin(angle)
    # input = R(angle)^-1 applied to output; y points down, so this turns counter-clockwise.
    return _affine(image, mask, _about_center(image, [[cos, -sin], [sin, cos]]))


def random_rotation(image, mask, seed, factor: float):
    """Rotate by a uniform angle in ``+-factor`` of a full turn."""
    angle = uniform(seed, -factor, factor) * 2.0 * math.pi
    return rotate(image, mask, angle)


def random_zoom(image, mask, seed, factor: float):
    """Zoom in or out by a scale in ``1 +- factor`` about the centre."""
    scale = uniform(seed, 1.0 - factor, 1.0 + factor)
    inv = 1.0 / scale
    zero = tf.constant(0.0)
    return _affine(image, mask, _about_center(image, [[inv, zero], [zero, inv]]))


def translate(image, mask, dx, dy):
    """Shift content by ``(dx, dy)`` pixels."""
    one, zero = tf.constant(1.0), tf.constant(0.0)
    matrix = tf.stack(
        [tf.stack([one, zero, -dx]), tf.stack([zero, one, -dy]), tf.constant([0.0, 0.0, 1.0])]
    )
    return _affine(image, mask, matrix)


def random_translation(image, mask, seed, factor: float):
    """Shift by up to ``factor`` of height and width in each direction."""
    shape = tf.cast(tf.shape(image), tf.float32)
    d = uniform(seed, -factor, factor, shape=(2,))
    return translate(image, mask, d[0] * shape[1], d[1] * shape[0])


def random_brightness(image, seed, delta: float):
    """Add a uniform offset in ``+-delta`` (0..1 images), clipped."""
    return tf.clip_by_value(tf.image.stateless_random_brightness(image, delta, seed), 0.0, 1.0)


def random_contrast(image, seed, factor: float):
    """Scale contrast by a factor in ``1 +- factor``, clipped."""
    out = tf.image.stateless_random_contrast(image, 1.0 - factor, 1.0 + factor, seed)
    return tf.clip_by_value(out, 0.0, 1.0)


def random_saturation(image, seed, factor: float):
    """Scale saturation by ``1 +- factor`` (RGB only; gray images are unchanged)."""
    if image.shape[-1] != 3:
        return image
    out = tf.image.stateless_random_saturation(image, 1.0 - factor, 1.0 + factor, seed)
    return tf.clip_by_value(out, 0.0, 1.0)


def random_hue(image, seed, delta: float):
    """Shift hue by up to ``delta`` turns (RGB only)."""
    if image.shape[-1] != 3:
        return image
    return tf.clip_by_value(tf.image.stateless_random_hue(image, delta, seed), 0.0, 1.0)


def erase(image, top, left, height, width, fill):
    """Replace the rectangle ``[top:top+height, left:left+width]`` with ``fill``."""
    shape = tf.shape(image)
    ys = tf.range(shape[0])[:, None]
    xs = tf.range(shape[1])[None, :]
    inside = (ys >= top) & (ys < top + height) & (xs >= left) & (xs < left + width)
    return tf.where(inside[..., None], fill, image)


def random_erasing(image, seed, probability: float, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
    """With ``probability``, fill a random rectangle with uniform noise.

    The rectangle covers ``scale`` of the area with an aspect in ``ratio``.
    """
    s = split_seed(seed, 5)
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    area = uniform(s[0], scale[0], scale[1]) * h * w
    aspect = tf.exp(uniform(s[1], math.log(ratio[0]), math.log(ratio[1])))
    eh = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32), 1, shape[0])
    ew = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32), 1, shape[1])
    top = tf.cast(uniform(s[2]) * tf.cast(shape[0] - eh + 1, tf.float32), tf.int32)
    left = tf.cast(uniform(s[3]) * tf.cast(shape[1] - ew + 1, tf.float32), tf.int32)
    noise = tf.random.stateless_uniform(tf.shape(image), s[4], dtype=image.dtype)
    erased = erase(image, top, left, eh, ew, noise)
    return tf.cond(uniform(split_seed(seed, 6)[5]) < probability, lambda: erased, lambda: image)


# --------------------------------------------------------------------------- RandAugment
def _blend(a, b, factor):
    return tf.clip_by_value(b + (a - b) * factor, 0.0, 1.0)


def _gray(image):
    if image.shape[-1] == 3:
        return tf.image.rgb_to_grayscale(image)
    return image


def _shear(image, sx, sy):
    one = tf.constant(1.0)
    return _affine(image, None, _about_center(image, [[one, sx], [sy, one]]))[0]


RANDAUGMENT_OPS = (
    "identity", "autocontrast", "rotate", "solarize", "color", "posterize", "contrast",
    "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y",
)  # fmt: skip


def randaugment(image, seed, num_ops: int = 2, magnitude: float = 9.0):
    """RandAugment (Cubuk et al. 2019) on a 0..1 image: ``num_ops`` ops drawn uniformly.

    Each op has a random sign and strength ``magnitude / 10`` of its range
    (rotate 30 degrees, shear 0.3, translate 0.45 of the size, colour
    factors 1 +- 0.9, solarize threshold, posterize down to 4 bits).
    """
    m = magnitude / 10.0
    shape = tf.cast(tf.shape(image), tf.float32)

    def apply(x, s):
        s2 = split_seed(s, 2)
        sign = tf.where(uniform(s2[0]) < 0.5, -1.0, 1.0)
        zero = tf.constant(0.0)
        bits = tf.cast(8 - round(4 * m), tf.float32)
        levels = tf.pow(2.0, bits) - 1.0
        lo = tf.reduce_min(x, axis=[0, 1], keepdims=True)
        hi = tf.reduce_max(x, axis=[0, 1], keepdims=True)
        blur = tf.nn.depthwise_conv2d(
            x[None], tf.ones([3, 3, x.shape[-1], 1]) / 9.0, [1, 1, 1, 1], "SAME"
        )[0]
        branches = [
            lambda: x,
            lambda: tf.where(hi > lo, (x - lo) / tf.maximum(hi - lo, 1e-6), x),
            lambda: rotate(x, None, sign * m * math.pi / 6.0)[0],
            lambda: tf.where(x >= 1.0 - m, 1.0 - x, x),
            lambda: _blend(x, _gray(x) * tf.ones_like(x), 1.0 + sign * 0.9 * m),
            lambda: tf.round(x * levels) / levels,
            lambda: _blend(x, tf.reduce_mean(_gray(x)) * tf.ones_like(x), 1.0 + sign * 0.9 * m),
            lambda: _blend(x, tf.zeros_like(x), 1.0 + sign * 0.9 * m),
            lambda: _blend(x, blur, 1.0 + sign * 0.9 * m),
            lambda: _shear(x, sign * 0.3 * m, zero),
            lambda: _shear(x, zero, sign * 0.3 * m),
            lambda: translate(x, None, sign * 0.45 * m * shape[1], zero)[0],
            lambda: translate(x, None, zero, sign * 0.45 * m * shape[0])[0],
        ]
        which = tf.random.stateless_uniform(
            [], s2[1], minval=0, maxval=len(branches), dtype=tf.int32
        )
        out = tf.switch_case(which, branches)
        out.set_shape(x.shape)
        return out

    for s in tf.unstack(split_seed(seed, num_ops)):
        image = apply(image, s)
    return image


# --------------------------------------------------------------------------- crops
def _crop_window(shape, seed, scale, ratio):
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def random_resized_crop(image, mask, seed, size, scale=(0.08, 1.0), ratio=(0.75, 4 / 3)):
    """Crop a random window (``scale`` of the area, aspect in ``ratio``) and resize to ``size``.

    Works on a decoded uint8 image (and mask); see :func:`decode_random_crop`
    for encoded bytes.
    """
    window = _crop_window(tf.shape(image), seed, scale, ratio)
    image = image[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
    out = resize_image(image, size)
    if mask is None:
        return out, None
    mask = mask[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
    return out, resize_mask(mask, size)


def decode_random_crop(
    data, channels, seed, size, scale=(0.08, 1.0), ratio=(0.75, 4 / 3), formats=None
):
    """Random resized crop straight from encoded bytes.

    For JPEG only the crop window is decoded (``tf.image.decode_and_crop_jpeg``);
    other formats are decoded whole (by :func:`decode_image`) and sliced.
    ``formats`` as in :func:`decode_image`.
    """

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        window = _crop_window(shape, seed, scale, ratio)
        return tf.image.decode_and_crop_jpeg(data, window, channels=3, dct_method=JPEG_DCT_METHOD)

    def other():
        image = decode_image(data, 3, formats)
        window = _crop_window(tf.shape(image), seed, scale, ratio)
        return image[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]

    if formats is not None and set(formats) <= {"JPEG"}:
        image = jpeg()
    elif formats is not None and "JPEG" not in formats:
        image = other()
    else:
        image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    image.set_shape([None, None, 3])
    return resize_image(to_channels(image, channels), size)


# --------------------------------------------------------------------------- batch level
def _beta(seed, alpha: float):
    s = split_seed(seed, 2)
    a = tf.random.stateless_gamma([], s[0], alpha)
    b = tf.random.stateless_gamma([], s[1], alpha)
    return a / tf.maximum(a + b, 1e-12)


def mixup(images, labels, seed, alpha: float):
    """MixUp: blend each example with a shuffled partner, ``lam ~ Beta(alpha, alpha)``.

    Args:
        images: ``(B, H, W, C)`` float (any scale: the blend is convex).
        labels: ``(B, K)`` float: one-hot classes or multi-hot labels.
    """
    s = split_seed(seed, 2)
    lam = _beta(s[0], alpha)
    perm = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(images)[0]), s[1])
    mixed = lam * images + (1.0 - lam) * tf.gather(images, perm)
    return mixed, lam * labels + (1.0 - lam) * tf.gather(labels, perm)


def cutmix(images, labels, seed, alpha: float):
    """CutMix: paste a box from a shuffled partner; labels mix by the box's area.

    Images of any dtype (pixels are copied, not blended).
    """
    s = split_seed(seed, 4)
    lam = _beta(s[0], alpha)
    perm = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(images)[0]), s[1])
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    cut = tf.sqrt(1.0 - lam)
    ch, cw = tf.cast(hf * cut, tf.int32), tf.cast(wf * cut, tf.int32)
    centre = uniform(s[2], shape=(2,))
    cy, cx = tf.cast(centre[0] * hf, tf.int32), tf.cast(centre[1] * wf, tf.int32)
    y0, y1 = tf.clip_by_value(cy - ch // 2, 0, h), tf.clip_by_value(cy + ch - ch // 2, 0, h)
    x0, x1 = tf.clip_by_value(cx - cw // 2, 0, w), tf.clip_by_value(cx + cw - cw // 2, 0, w)
    ys = tf.range(h)[:, None]
    xs = tf.range(w)[None, :]
    box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
    mixed = tf.where(box[None, :, :, None], tf.gather(images, perm), images)
    kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / (hf * wf)
    return mixed, kept * labels + (1.0 - kept) * tf.gather(labels, perm)
