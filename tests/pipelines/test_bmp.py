"""Palette BMP files decode to Pillow's colours; BMP layouts no decoder reads are rejected."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasflow.errors import DataError
from kerasflow.pipelines import bmp, prepare
from kerasflow.pipelines import transforms as T
from kerasflow.pipelines.check import check_data
from tests.pipelines.helpers import data_config, make_class_folder, write_bmp

ALL_TRAIN = {"train": 1.0, "validation": 0.0, "test": 0.0}
RNG = np.random.default_rng(3)
PICTURE = Image.fromarray(RNG.integers(0, 256, (5, 9, 3), dtype=np.uint8))


def _palette(n: int) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in RNG.integers(0, 256, 3)) for _ in range(n)]


def _write(kind: str, path):
    """One BMP of each layout; Pillow writes the 8- and 1-bit ones."""
    if kind in ("p8", "p8_16_colours", "gray8", "mono1"):
        image = {
            "p8": PICTURE.convert("P"),
            "p8_16_colours": PICTURE.convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
            "gray8": PICTURE.convert("L"),
            "mono1": PICTURE.convert("1"),
        }[kind]
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        return path
    bpp, top_down = {"p4": (4, False), "p1_colour": (1, False), "p8_top_down": (8, True)}[kind]
    return write_bmp(path, RNG.integers(0, 2**bpp, (6, 11)), _palette(2**bpp), bpp, top_down)


KINDS = ["p8", "p8_16_colours", "gray8", "mono1", "p4", "p1_colour", "p8_top_down"]


def _pillow_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _want(rgb: np.ndarray, channels: int) -> np.ndarray:
    """Pillow's RGB under the pipeline's channel policy (gray taken from RGB)."""
    return rgb if channels == 3 else T.to_channels(tf.constant(rgb), 1).numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_decode_image_equals_pillow(kind, tmp_path):
    path = _write(kind, tmp_path / f"{kind}.bmp")
    data = tf.constant(path.read_bytes())
    rgb = _pillow_rgb(path)
    graph_decode = tf.function(T.decode_image, reduce_retracing=True)
    for channels in (3, 1):
        want = _want(rgb, channels)
        np.testing.assert_array_equal(T.decode_image(data, channels).numpy(), want)
        np.testing.assert_array_equal(graph_decode(data, channels).numpy(), want)


def test_palette_bmp_decoded_wrongly_by_tensorflow_alone(tmp_path):
    # Why bmp.py exists: TF reads an 8-bit palette BMP's indices as gray levels.
    path = _write("p8", tmp_path / "p8.bmp")
    plain = tf.io.decode_image(path.read_bytes(), channels=3).numpy()
    assert not np.array_equal(plain, _pillow_rgb(path))
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(_write("p4", tmp_path / "p4.bmp").read_bytes(), channels=3)


@pytest.mark.parametrize("channels", [3, 1])
def test_class_folder_of_palette_bmps_through_the_pipeline(channels, tmp_path):
    root = tmp_path / "bmps"
    for i, kind in enumerate(KINDS):
        _write(kind, root / ("a" if i % 2 else "b") / f"{kind}.bmp")
    paths = sorted(root.rglob("*.bmp"))
    cfg = data_config(source=str(root), image_size=[4, 4], channels=channels, split=ALL_TRAIN,
                      resize="stretch", interpolation="nearest", normalize="none")  # fmt: skip
    data = prepare(cfg)
    assert data.size("train") == len(KINDS) and not data.skipped
    order = [data.source.paths[i] for i in data.indices["train"]]
    got = dict(zip(order, data.dataset("train", training=False, batch=False), strict=True))
    for path in paths:
        want = T.resize_image(_want(_pillow_rgb(path), channels), (4, 4), "stretch", "nearest")
        np.testing.assert_array_equal(got[str(path)][0].numpy(), want.numpy(), err_msg=str(path))


def test_saved_model_signature_decodes_palette_bmp(tmp_path):
    png = tf.io.encode_png(np.asarray(PICTURE)).numpy()
    palette_bmp = _write("p8", tmp_path / "p8.bmp")

    class Decoder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, image_bytes):
            return tf.map_fn(
                lambda data: T.decode_image(data, 3),
                image_bytes,
                fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
            )

    tf.saved_model.save(Decoder(), str(tmp_path / "model"))
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    out = loaded(tf.constant([png, palette_bmp.read_bytes()])).numpy()
    np.testing.assert_array_equal(out[0], np.asarray(PICTURE))
    np.testing.assert_array_equal(out[1], _pillow_rgb(palette_bmp))


def _rle8(path):
    # 5 rows of "5 pixels of index 1", end of line each, then end of bitmap.
    rle = (b"\x05\x01\x00\x00") * 5 + b"\x00\x01"
    return write_bmp(path, np.ones((5, 5), int), _palette(2), 8, compression=1, pixels=rle)


def test_decode_fails_on_rle_and_truncated_bmp(tmp_path):
    rle = _rle8(tmp_path / "rle.bmp")
    assert _pillow_rgb(rle).shape == (5, 5, 3)  # a real BMP that Pillow reads
    with pytest.raises(tf.errors.InvalidArgumentError, match="RLE"):
        T.decode_image(rle.read_bytes(), 3)
    cut = _write("p8", tmp_path / "p8.bmp").read_bytes()[:-10]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Truncated BMP"):
        T.decode_image(cut, 3)


def test_header_problem_names_unsupported_layouts(tmp_path):
    rle = _rle8(tmp_path / "rle.bmp").read_bytes()
    assert "RLE8" in bmp.header_problem(rle) and "PNG" in bmp.header_problem(rle)
    sixteen = bytearray(_write("p8", tmp_path / "p8.bmp").read_bytes())
    sixteen[28:30] = (16).to_bytes(2, "little")
    assert "16-bit BMP" in bmp.header_problem(bytes(sixteen))
    os2 = bytearray(sixteen)
    os2[14:18] = (12).to_bytes(4, "little")
    assert "OS/2" in bmp.header_problem(bytes(os2))
    assert bmp.header_problem(_write("p4", tmp_path / "p4.bmp").read_bytes()) is None


@pytest.fixture()
def folder_with_rle(tmp_path):
    root = make_class_folder(tmp_path, per_class=2, size=(6, 6))
    return root, _rle8(root / "dog" / "rle.bmp")


def test_rle_bmp_error_policy_names_the_file(folder_with_rle):
    root, rle = folder_with_rle
    with pytest.raises(DataError, match="RLE8") as info:
        prepare(data_config(source=str(root), image_size=[6, 6], channels=3))
    assert str(rle) in str(info.value) and "Convert it to PNG" in str(info.value)


def test_rle_bmp_skip_policy_lists_it(folder_with_rle):
    root, rle = folder_with_rle
    cfg = data_config(source=str(root), image_size=[6, 6], channels=3, on_bad_image="skip",
                      split=ALL_TRAIN)  # fmt: skip
    data = prepare(cfg)
    assert [p for p, _ in data.skipped] == [str(rle)] and "RLE8" in data.skipped[0][1]
    assert sum(int(x.shape[0]) for x, _ in data.dataset("train")) == 6
    report = check_data(cfg)
    assert [p for p, _ in report.problems] == [str(rle)]
