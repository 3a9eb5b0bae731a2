"""The deterministic preprocessing of serving, in NumPy and Pillow (no TensorFlow).

A LiteRT or ONNX artefact takes uint8 pixels at the model's input size; this
module turns an image file or a pixel array of any size into them, following
:func:`kerasflow.pipelines.transforms.deterministic`: the channel policy
(alpha dropped, RGB to gray with the ITU-R 601 weights and rounding, gray to
RGB repeated), ``data.center_crop``, then ``data.resize`` (``stretch``,
``crop``, ``pad``) with half-pixel-centre ``bilinear`` or ``nearest``
interpolation as ``tf.image.resize`` computes it, rounded half up. Area,
bicubic and anti-aliased resizes go through Pillow, which can differ from
TensorFlow by a grey level or so; an image already at the input size is
never resampled.

Decoding uses Pillow (PNG, JPEG, GIF first frame, BMP). Its JPEG pixels equal
the pipeline's and the SavedModel's (``decode_image`` decodes JPEG with the
accurate IDCT, as Pillow's libjpeg-turbo does).

Example:
    >>> pixels = prepare_image(decode_file(open("7.png", "rb").read(), 1), data_config)
    >>> pixels.shape, pixels.dtype
    ((16, 16, 1), dtype('uint8'))
"""

from __future__ import annotations

import io

import numpy as np

# tf.image.rgb_to_grayscale's weights.
_GRAY = np.array([0.2989, 0.5870, 0.1140], np.float32)
_PILLOW_FILTERS = {
    "area": "BOX",
    "bicubic": "BICUBIC",
    "lanczos3": "LANCZOS",
    "bilinear": "BILINEAR",
}


def decode_file(data: bytes, channels: int) -> np.ndarray:
    """Encoded image bytes -> uint8 ``(H, W, channels)`` (channel policy applied).

    Raises:
        ValueError: Pillow cannot decode the bytes.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)
        mode = img.mode
        if mode in ("L", "LA", "RGB", "RGBA"):
            arr = np.asarray(img)
        elif mode in ("1", "I;16", "I", "F"):
            arr = np.asarray(img.convert("L"))
        else:  # palette, CMYK, YCbCr...: RGB (with alpha where the palette has it)
            arr = np.asarray(img.convert("RGBA" if "transparency" in img.info else "RGB"))
    return to_channels(arr, channels)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 ``(H, W)`` or ``(H, W, 1..4)`` image with ``channels`` (1 or 3) channels."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    have = image.shape[-1]
    if have in (2, 4):  # drop alpha, like the pipeline
        image = image[..., : have - 1]
        have -= 1
    if have == channels:
        return image.astype(np.uint8, copy=False)
    if channels == 1:
        gray = image.astype(np.float32) @ _GRAY
        return np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., None]
    return np.repeat(image, channels, axis=-1).astype(np.uint8, copy=False)


def prepare_image(image: np.ndarray, data_config: dict) -> np.ndarray:
    """One uint8 image -> the model's uint8 input ``(height, width, channels)``.

    ``data_config`` is the ``data`` entry of an artefact's contract (the run's
    data section as JSON).
    """
    image = to_channels(image, int(data_config["channels"]))
    fraction = data_config.get("center_crop")
    if fraction:
        image = _center_crop(image, float(fraction))
    size = tuple(int(v) for v in data_config["image_size"])
    mode = data_config.get("resize", "stretch")
    interpolation = data_config.get("interpolation", "bilinear")
    antialias = bool(data_config.get("antialias", False))
    if mode == "crop":
        image = _crop_to_aspect(image, size)
    if mode == "pad":
        h, w = image.shape[:2]
        scale = min(size[0] / h, size[1] / w)
        nh = int(np.clip(round(h * scale), 1, size[0]))
        nw = int(np.clip(round(w * scale), 1, size[1]))
        inner = resize(image, (nh, nw), interpolation, antialias)
        out = np.zeros((*size, image.shape[-1]), np.uint8)
        top, left = (size[0] - nh) // 2, (size[1] - nw) // 2
        out[top : top + nh, left : left + nw] = inner
        return out
    return resize(image, size, interpolation, antialias)


def resize(image: np.ndarray, size, interpolation: str = "bilinear", antialias=False) -> np.ndarray:
    """uint8 HWC ``image`` resized to ``size`` (height, width), rounded like the pipeline."""
    size = (int(size[0]), int(size[1]))
    if image.shape[:2] == size:
        return image
    if interpolation == "nearest" and not antialias:
        rows = _nearest(image.shape[0], size[0])
        cols = _nearest(image.shape[1], size[1])
        return image[rows][:, cols]
    if interpolation == "bilinear" and not antialias:
        out = _bilinear_axis(image.astype(np.float32), size[0], 0)
        out = _bilinear_axis(out, size[1], 1)
        return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return _pillow_resize(image, size, interpolation)


def _nearest(n_in: int, n_out: int) -> np.ndarray:
    # tf.image.resize nearest (half-pixel centres): floor((i + 0.5) * scale).
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def _bilinear_axis(image: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = image.shape[axis]
    if n_in == n_out:
        return image
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    centre = np.clip(centre, 0.0, n_in - 1)
    low = np.floor(centre).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    frac = (centre - low).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = n_out
    frac = frac.reshape(shape)
    return np.take(image, low, axis) * (1 - frac) + np.take(image, high, axis) * frac


def _pillow_resize(image: np.ndarray, size, interpolation: str) -> np.ndarray:
    from PIL import Image

    resample = getattr(Image.Resampling, _PILLOW_FILTERS.get(interpolation, "BILINEAR"))
    planes = [
        np.asarray(Image.fromarray(image[..., c]).resize((size[1], size[0]), resample))
        for c in range(image.shape[-1])
    ]
    return np.stack(planes, axis=-1).astype(np.uint8)


def _center_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = max(1, int(round(h * fraction))), max(1, int(round(w * fraction)))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def _crop_to_aspect(image: np.ndarray, size) -> np.ndarray:
    h, w = image.shape[:2]
    target = size[1] / size[0]
    ch = max(1, int(min(h, round(w / target))))
    cw = max(1, int(min(w, round(h * target))))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]
