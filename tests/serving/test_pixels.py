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


def _jpeg_files() -> dict[str, bytes]:
    """Real JPEG files: a camera photo (matplotlib's sample) and re-encodings of it."""
    from matplotlib import cbook
    from PIL import Image

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    files = {"original": open(path, "rb").read()}  # noqa: SIM115 - read whole
    with Image.open(path) as img:
        photo = img.convert("RGB").crop((100, 80, 300, 230))
    for quality in (50, 75, 95, 100):
        for subsampling, name in ((0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")):
            buf = io.BytesIO()
            photo.save(buf, "JPEG", quality=quality, subsampling=subsampling)
            files[f"q{quality} {name}"] = buf.getvalue()
        buf = io.BytesIO()
        photo.convert("L").save(buf, "JPEG", quality=quality)
        files[f"q{quality} gray"] = buf.getvalue()
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90, progressive=True)
    files["q90 progressive"] = buf.getvalue()
    return files


def test_jpeg_pixels_of_training_saved_model_and_artefact_serving_are_equal():
    """decode_image (the pipeline and the SavedModel's image_bytes signature) decodes JPEG
    with the accurate IDCT, as Pillow (LiteRT/ONNX serving) does: the same pixels."""
    import tensorflow as tf

    from kerasflow.pipelines.transforms import decode_image

    files = _jpeg_files()
    graph = tf.function(lambda data, channels: decode_image(data, channels))  # formats unknown
    default_diff = []
    for name, data in files.items():
        for channels in (1, 3):
            want = pixels.decode_file(data, channels)
            for formats in (None, {"JPEG"}, {"JPEG", "PNG"}):
                got = decode_image(tf.constant(data), channels, formats).numpy()
                assert np.array_equal(got, want), (name, channels, formats)
            assert np.array_equal(graph(tf.constant(data), channels).numpy(), want), name
        fast = tf.io.decode_jpeg(data, channels=3).numpy()  # TensorFlow's default IDCT
        default_diff.append(np.abs(fast.astype(int) - pixels.decode_file(data, 3)).max())
    # the check has teeth: the default decoder differs by several grey levels on these files
    assert max(default_diff) >= 5, default_diff


def test_decode_image_keeps_png_gif_and_bmp():
    import tensorflow as tf
    from PIL import Image

    from kerasflow.pipelines.transforms import decode_image

    rgb = np.random.default_rng(5).integers(0, 256, (6, 9, 3), np.uint8)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    for fmt, extra in (("PNG", {}), ("BMP", {}), ("GIF", {"save_all": True})):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, append_images=frames[1:], **extra)
        data = buf.getvalue()
        want = pixels.decode_file(data, 3)  # a GIF: its first frame
        for formats in (None, {fmt}, {"JPEG", fmt}):
            got = decode_image(tf.constant(data), 3, formats).numpy()
            assert np.array_equal(got, want), (fmt, formats)
