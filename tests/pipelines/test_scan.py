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


def forged_size(data: bytes, width: int, height: int) -> bytes:
    """A real PNG or JPEG whose header is rewritten to declare ``width x height``.

    A PNG keeps a valid IHDR CRC (it passes the chunk check); a baseline JPEG's SOF0
    gets the sizes modulo 65536; anything else (no SOF0) is returned unchanged.
    """
    data = bytearray(data)
    if data.startswith(b"\x89PNG"):
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    elif (sof := data.find(b"\xff\xc0")) > 0:
        data[sof + 5 : sof + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    return bytes(data)


def _solid(size, mode: str) -> Image.Image:
    return Image.new(mode, size, 128 if mode in ("L", "P", "1") else (128, 64, 32))


# The encodings closest to each bound: one flat colour, the encoder's smallest settings.
TIGHTEST = [
    ("JPEG", "L", {"quality": 1, "optimize": True}),
    ("JPEG", "L", {"quality": 1, "optimize": True, "progressive": True}),
    ("JPEG", "RGB", {"quality": 1, "optimize": True, "subsampling": 2}),
    ("JPEG", "RGB", {"quality": 95, "subsampling": 0}),
    ("PNG", "RGB", {"optimize": True}),
    ("PNG", "L", {"optimize": True}),
    ("PNG", "1", {"optimize": True}),
    ("PNG", "P", {"optimize": True}),
    ("BMP", "RGB", {}),
    ("BMP", "1", {}),
    ("BMP", "P", {}),
]


@pytest.mark.parametrize(("fmt", "mode", "kw"), TIGHTEST)
@pytest.mark.parametrize("size", [(1, 1), (13, 7), (2000, 1500)])
def test_whole_files_always_fit_their_coded_size_bound(fmt, mode, kw, size):
    data = _encode(_solid(size, mode), fmt, **kw)
    header = scan.read_header(data)
    assert 0 < header.min_bytes <= len(data), (header, len(data))
    assert scan.coded_size_problem(header, len(data)) is None
    if size == (2000, 1500) and fmt != "BMP" and kw.get("quality", 1) == 1:
        assert header.min_bytes > len(data) / 5  # a bound that bites (0.33-0.83 measured)


def test_a_short_file_with_a_forged_size_is_refused_before_decoding(tmp_path):
    """The fuzz suite's 740-byte JPEG said 9000 x 4000: libjpeg decoded 36 MP of grey."""
    jpeg = forged_size(_encode(RGB, "JPEG"), 9000, 4000)
    header = scan.read_header(jpeg)
    assert header.pixels == 36_000_000 and scan.pixel_budget_problem(header, 40_000_000) is None
    assert header.min_bytes == 70_313  # a bit for each of the 1125 x 500 8x8 luma blocks
    problem = scan.coded_size_problem(header, len(jpeg))
    assert problem == (
        f"the file is {len(jpeg)} bytes, but its JPEG header declares 9000x4000 pixels, which "
        "no file under 70313 bytes can encode (a truncated file, or a forged header)"
    )
    png = forged_size(_encode(RGB, "PNG"), 9000, 4000)
    assert "no file under 104656 bytes" in scan.coded_size_problem(scan.read_header(png), len(png))
    root = make_class_folder(tmp_path / "data", per_class=2, size=(6, 6))
    (root / "dog" / "forged.jpg").write_bytes(jpeg)
    assert scan.quick_scan(root / "dog" / "forged.jpg").problem == problem
    assert scan.scan_bytes(jpeg, "record 3").problem == problem
    cfg = data_config(source=str(root), image_size=[6, 6], channels=3)
    with pytest.raises(DataError, match="forged header") as caught:
        prepare(cfg)
    assert "forged.jpg" in str(caught.value)


def test_formats_without_a_floor_have_none():
    arithmetic = bytearray(_encode(RGB, "JPEG"))
    sof = arithmetic.find(b"\xff\xc0")
    arithmetic[sof + 1] = 0xC9  # arithmetic-coded: no bits-per-block floor
    gif = _encode(RGB, "GIF")
    for data in (bytes(arithmetic), gif):
        assert scan.read_header(data).min_bytes == 0
