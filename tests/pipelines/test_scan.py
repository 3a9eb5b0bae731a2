"""scan.read_header and the pixel budget: headers read without decoding, bombs named."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from kerasflow.errors import DataError
from kerasflow.pipelines import prepare, scan
from tests.pipelines.helpers import data_config, make_class_folder


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width x height`` zero pixels: a few KB that decode to gigabytes."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    stream = zlib.compressobj(9)
    data = b"".join(stream.compress(row) for _ in range(height)) + stream.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("fmt", "kw"),
    [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("BMP", {}), ("GIF", {})],
)
def test_read_header_gives_the_declared_size(fmt, kw):
    header = scan.read_header(_encode(RGB, fmt, **kw))
    assert (header.format, header.width, header.height, header.frames) == (fmt, 53, 37, 1)
    assert header.pixels == 53 * 37


def test_jpeg_sof_after_a_large_exif_segment_and_gif_frames_counted():
    exif = Image.Exif()
    exif[270] = "x" * 20000
    header = scan.read_header(_encode(RGB, "JPEG", exif=exif.tobytes()))
    assert (header.width, header.height) == (53, 37)
    frames = [Image.fromarray(np.full((20, 30), 40 * i, np.uint8)) for i in range(5)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    gif = scan.read_header(buf.getvalue())
    assert (gif.width, gif.height, gif.frames, gif.pixels) == (30, 20, 5, 3000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello, not an image", "not a JPEG, PNG, GIF or BMP"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "ends inside its IHDR"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "ends inside"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x3b", "no image frame"),
    ],
)
def test_read_header_refuses_what_it_cannot_read(data, message):
    with pytest.raises(ValueError, match=message):
        scan.read_header(data)


def test_png_bomb_is_read_in_microseconds_and_over_budget():
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 100_000
    start = time.perf_counter()
    header = scan.read_header(bomb)
    assert time.perf_counter() - start < 0.1
    assert (header.width, header.height) == (20000, 20000)
    problem = scan.pixel_budget_problem(header, scan.MAX_IMAGE_PIXELS)
    assert problem is not None and "20000x20000 = 400.0 megapixels" in problem
    assert scan.pixel_budget_problem(scan.read_header(_encode(RGB, "PNG")), 2000) is None


def test_bomb_in_a_training_folder_is_a_bad_image_named(tmp_path):
    root = make_class_folder(tmp_path / "data", per_class=2, size=(6, 6))
    bomb = root / "dog" / "bomb.png"
    bomb.write_bytes(png_bomb(20000, 20000))
    info = scan.quick_scan(bomb)
    assert "400.0 megapixels, over the budget of 40 megapixels" in info.problem
    assert scan.full_scan(bomb).problem == info.problem  # never decoded
    assert "megapixels" in scan.scan_bytes(bomb.read_bytes(), "record 7").problem
    cfg = data_config(source=str(root), image_size=[6, 6], channels=3)
    with pytest.raises(DataError, match="megapixels") as caught:
        prepare(cfg)
    assert str(bomb) in str(caught.value)
    small = scan.quick_scan(root / "dog" / "dog_0.png", max_pixels=10)
    assert "over the budget of 1e-05 megapixels" in small.problem
