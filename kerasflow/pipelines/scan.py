"""Reading image files once with Pillow, to validate them before any training.

``quick_scan`` is what every ``prepare`` does: the file's size, its magic
bytes, its header (through ``PIL.Image.open``), for JPEG and PNG the
end-of-image marker that a truncated file lacks, and for BMP the layouts that no
decoder here reads right (RLE, 16-bit, OS/2 headers; see ``bmp.py``).
``full_scan`` (used by ``kerasflow data check``) also decodes the pixels;
``scan_bytes`` does the same for encoded bytes held in a record. Training
itself decodes in ``tf.data``.

Every scan first reads the image's own header (:func:`read_header`: PNG IHDR,
JPEG SOF, GIF screen and frames, BMP DIB) and refuses an image with more than
``max_pixels`` pixels (default :data:`MAX_IMAGE_PIXELS`) before Pillow or
TensorFlow decode anything: a 50 KB PNG can declare 20000 x 20000 pixels and
decode to gigabytes. It also refuses a file too short for the size its header
declares (:func:`coded_size_problem`): decoders fill what is missing with grey,
so a 740-byte JPEG whose header says 9000 x 4000 decodes to 36 megapixels.
``kerasflow serve`` applies the same guards to requests.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np


def _bmp():
    # bmp.py decodes with TensorFlow; the header checks of `kerasflow serve` must not import it.
    from kerasflow.pipelines import bmp

    return bmp


MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}
EXTENSION_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}
MAX_IMAGE_PIXELS = 40_000_000  # like Pillow's bomb guard (89 MP warns), a bit stricter
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), not DHT/JPG/DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_ARITHMETIC = frozenset([0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF])  # no useful size bound
# Deflate's best case: a 258-byte match coded in 2 bits (1-bit length and distance codes).
DEFLATE_MAX_RATIO = 1032
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, GA, RGBA
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header declares, and the pixels decoding it allocates.

    ``pixels`` is width x height x frames (a GIF decodes every frame), unless
    the reader counted it otherwise (a GIF frame larger than its screen).
    ``min_bytes`` is a lower bound on the size of any complete file of this
    format and declared size (0 where none is known: GIF, arithmetic-coded
    JPEG, compressed or OS/2 BMP); see :func:`coded_size_problem`.
    """

    format: str
    width: int
    height: int
    frames: int = 1
    pixels: int = 0
    min_bytes: int = 0

    def __post_init__(self):
        if not self.pixels:
            object.__setattr__(self, "pixels", self.width * self.height * self.frames)


def _read_exact(fh: BinaryIO, size: int, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise ValueError(f"the file ends inside its {what}")
    return data


def _png_header(fh: BinaryIO) -> ImageHeader:
    head = _read_exact(fh, 26, "IHDR chunk")
    if head[12:16] != b"IHDR":
        raise ValueError("the first chunk is not IHDR")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    # The filtered rows (a filter byte each) that the IDAT stream inflates to; interlacing
    # only adds filter bytes, so this is the least any PNG of this size holds.
    bits = head[24] * _PNG_SAMPLES.get(head[25], 1)
    raw = height * (1 + (width * bits + 7) // 8)
    return ImageHeader("PNG", width, height, min_bytes=_ceil_div(raw, DEFLATE_MAX_RATIO))


def _jpeg_min_bytes(marker: int, width: int, height: int, components: bytes) -> int:
    """The least entropy-coded data a Huffman JPEG of this size holds.

    Every 8x8 block of a component has its DC difference coded in some scan, in
    at least one bit (a Huffman code is never shorter): at least one bit a block
    of the component with the most blocks. Arithmetic coding has no such floor.
    """
    if marker in _JPEG_ARITHMETIC or not components:
        return 0
    factors = [(b >> 4, b & 15) for b in components[1::3]]
    if any(h == 0 or v == 0 for h, v in factors):
        raise ValueError("a component has a sampling factor of 0")
    hmax, vmax = max(h for h, _ in factors), max(v for _, v in factors)
    blocks = max(
        _ceil_div(_ceil_div(width * h, hmax), 8) * _ceil_div(_ceil_div(height * v, vmax), 8)
        for h, v in factors
    )
    return _ceil_div(blocks, 8)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_header(fh: BinaryIO) -> ImageHeader:
    fh.seek(2)
    while True:
        byte = _read_exact(fh, 1, "markers")
        if byte != b"\xff":
            raise ValueError(f"expected a marker, found byte 0x{byte[0]:02x}")
        marker = 0xFF
        while marker == 0xFF:  # fill bytes
            marker = _read_exact(fh, 1, "markers")[0]
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise ValueError("no start-of-frame (SOF) marker before the image data")
        length = int.from_bytes(_read_exact(fh, 2, "segment length"), "big")
        if length < 2:
            raise ValueError(f"segment length {length}")
        if marker in _JPEG_SOF:
            sof = _read_exact(fh, 6, "SOF segment")
            height, width = int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")
            if height == 0:
                raise ValueError("the height is defined later (DNL), which is not supported")
            components = _read_exact(fh, 3 * sof[5], "SOF segment")
            return ImageHeader(
                "JPEG", width, height, min_bytes=_jpeg_min_bytes(marker, width, height, components)
            )
        fh.seek(length - 2, io.SEEK_CUR)


def _skip_sub_blocks(fh: BinaryIO) -> None:
    while size := _read_exact(fh, 1, "data sub-blocks")[0]:
        fh.seek(size, io.SEEK_CUR)


def _gif_header(fh: BinaryIO) -> ImageHeader:
    screen = _read_exact(fh, 13, "logical screen descriptor")
    width, height = int.from_bytes(screen[6:8], "little"), int.from_bytes(screen[8:10], "little")
    if screen[10] & 0x80:
        fh.seek(3 * 2 ** ((screen[10] & 7) + 1), io.SEEK_CUR)
    frames = frame_pixels = 0
    while (block := fh.read(1)) not in (b"", b"\x3b"):
        if block == b"\x21":  # extension: label, then sub-blocks
            _read_exact(fh, 1, "extension label")
            _skip_sub_blocks(fh)
        elif block == b"\x2c":  # image descriptor, optional local colour table, LZW data
            desc = _read_exact(fh, 9, "image descriptor")
            w, h = int.from_bytes(desc[4:6], "little"), int.from_bytes(desc[6:8], "little")
            frame_pixels += max(w * h, width * height)
            if desc[8] & 0x80:
                fh.seek(3 * 2 ** ((desc[8] & 7) + 1), io.SEEK_CUR)
            _read_exact(fh, 1, "LZW code size")
            _skip_sub_blocks(fh)
            frames += 1
        else:
            raise ValueError(f"unknown block 0x{block[0]:02x}")
    if frames == 0:
        raise ValueError("no image frame")
    # The decoder makes frames x screen pixels; a frame larger than the screen counts whole.
    return ImageHeader(
        "GIF", width, height, frames=max(1, -(-frame_pixels // max(1, width * height)))
    )


def _bmp_header(fh: BinaryIO) -> ImageHeader:
    head = _read_exact(fh, 26, "BMP header")
    if int.from_bytes(head[14:18], "little") == 12:  # OS/2: 16-bit sizes
        width, height = int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
        return ImageHeader("BMP", width, height)
    width = abs(int.from_bytes(head[18:22], "little", signed=True))
    height = abs(int.from_bytes(head[22:26], "little", signed=True))
    more = _read_exact(fh, 8, "BMP header")  # planes, bits per pixel, compression
    bits, compression = int.from_bytes(more[2:4], "little"), int.from_bytes(more[4:8], "little")
    # Uncompressed rows (BI_RGB, BI_BITFIELDS) are padded to 4 bytes; RLE has no floor.
    rows = height * ((width * bits + 31) // 32) * 4 if compression in (0, 3) else 0
    return ImageHeader("BMP", width, height, min_bytes=rows)


_HEADER_READERS = {"PNG": _png_header, "JPEG": _jpeg_header, "GIF": _gif_header, "BMP": _bmp_header}


def read_header(source: str | os.PathLike | bytes | BinaryIO) -> ImageHeader:
    """The format, size and frame count an image declares, read without decoding it.

    Reads only the header (PNG IHDR, JPEG markers up to the SOF, BMP DIB
    header); a GIF's blocks are walked to count its frames. Cost: microseconds
    and no pixel memory, whatever size the image declares.

    Args:
        source: a file path, the encoded bytes, or a binary file object (read from its start).

    Raises:
        ValueError: not a JPEG, PNG, GIF or BMP, or a header that is cut short or malformed;
            the message says what is wrong.

    Example:
        >>> read_header(Path("cat.png").read_bytes())
        ImageHeader(format='PNG', width=640, height=480, frames=1)
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return read_header(io.BytesIO(source))
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            return read_header(fh)
    source.seek(0)
    fmt = sniff(source.read(8))
    if fmt is None:
        raise ValueError("not a JPEG, PNG, GIF or BMP file")
    source.seek(0)
    header = _HEADER_READERS[fmt](source)
    if header.width == 0 or header.height == 0:
        raise ValueError(f"the header declares a zero size {header.width}x{header.height}")
    return header


def pixel_budget_problem(header: ImageHeader, max_pixels: int) -> str | None:
    """Why an image is over the pixel budget (a message), or None when it fits."""
    if header.pixels <= max_pixels:
        return None
    frames = f" x {header.frames} frames" if header.frames > 1 else ""
    return (
        f"the {header.format} header declares {header.width}x{header.height}{frames} = "
        f"{header.pixels / 1e6:.1f} megapixels, over the budget of {max_pixels / 1e6:g} megapixels "
        "(a decompression bomb, or an image to downscale first)"
    )


def coded_size_problem(header: ImageHeader, size: int) -> str | None:
    """Why a file of ``size`` bytes cannot hold the image its header declares, or None.

    Decoders fill missing data with grey rather than fail, so a short file with a
    forged header decodes to as many pixels as it declares: this refuses it first.
    """
    if size >= header.min_bytes:
        return None
    return (
        f"the file is {size} bytes, but its {header.format} header declares "
        f"{header.width}x{header.height} pixels, which no file under {header.min_bytes} bytes "
        "can encode (a truncated file, or a forged header)"
    )


@dataclass
class FileInfo:
    """What a scan learned about one file; ``problem`` is None for a good file."""

    path: str
    problem: str | None = None
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str | None = None
    note: str | None = None


def sniff(head: bytes) -> str | None:
    """The image format from the first bytes, or None."""
    for magic, fmt in MAGIC.items():
        if head.startswith(magic):
            return fmt
    return None


def _describe_non_image(head: bytes) -> str:
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "not an image (HTML text)"
    if text.startswith(b"<"):
        return "not an image (XML/HTML text)"
    return "not an image (unknown format)"


def _open(source: Path | bytes):
    """``PIL.Image.open`` of a file path or of encoded bytes."""
    from PIL import Image

    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def _check_content(
    info: FileInfo,
    source: Path | bytes,
    size: int,
    head: bytes,
    tail: bytes,
    max_pixels: int = MAX_IMAGE_PIXELS,
):
    """Set ``info.problem`` (or format, size, mode) from the first and last bytes and the header."""
    from PIL import UnidentifiedImageError

    if size == 0:
        info.problem = "empty file (0 bytes)"
        return
    fmt = sniff(head)
    if fmt is None:
        info.problem = _describe_non_image(head)
        return
    info.format = fmt
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        info.problem = "truncated JPEG (no end-of-image marker)"
        return
    if fmt == "PNG" and b"IEND" not in tail:
        info.problem = "truncated PNG (no IEND chunk)"
        return
    if fmt == "BMP" and (problem := _bmp().header_problem(head)):
        info.problem = problem
        return
    try:
        header = read_header(source)
    except (OSError, ValueError) as exc:
        info.problem = f"unreadable {fmt} header ({exc})"
        return
    if problem := pixel_budget_problem(header, max_pixels) or coded_size_problem(header, size):
        info.problem = problem
        return
    try:
        with _open(source) as im:
            info.width, info.height = im.size
            info.mode = im.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        info.problem = f"unreadable {fmt} header ({exc})"
        return
    if info.width == 0 or info.height == 0:
        info.problem = f"image has zero size {info.width}x{info.height}"


def _check_pixels(info: FileInfo, source: Path | bytes) -> None:
    """Decode every pixel with Pillow; set ``info.problem`` when that fails."""
    if info.problem is not None:
        return
    try:
        with _open(source) as im:
            im.verify()
        with _open(source) as im:
            im.load()
    except (OSError, ValueError, SyntaxError) as exc:
        info.problem = f"corrupt {info.format} data ({exc})"


def quick_scan(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> FileInfo:
    """Cheap validation: empty, non-image, truncated, unreadable header, over ``max_pixels``."""
    path = Path(path)
    info = FileInfo(str(path))
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(_bmp().HEAD_BYTES)
            fh.seek(max(0, size - 1024))
            tail = fh.read()
    except OSError as exc:
        info.problem = f"unreadable ({exc.strerror or exc})"
        return info
    _check_content(info, path, size, head, tail, max_pixels)
    expected = EXTENSION_FORMAT.get(path.suffix.lower())
    if info.problem is None and expected and expected != info.format:
        info.note = f"{info.format} data in a {path.suffix} file"
    return info


def full_scan(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> FileInfo:
    """``quick_scan`` plus a full decode of the pixels (slower; for ``data check``)."""
    info = quick_scan(path, max_pixels)
    _check_pixels(info, Path(path))
    return info


def scan_bytes(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> FileInfo:
    """``full_scan`` of encoded image bytes (e.g. one TFRecord record's image) called ``name``."""
    info = FileInfo(name)
    _check_content(info, data, len(data), data[: _bmp().HEAD_BYTES], data[-1024:], max_pixels)
    _check_pixels(info, data)
    return info


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def image_mode(path: str | os.PathLike) -> str:
    """PIL mode (``L``, ``RGB``, ``P``, ...) from the header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.mode


def mask_max(path: str | os.PathLike) -> int:
    """Largest class id in a PNG class-index mask."""
    return int(read_mask(path).max(initial=0))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A PNG class-index mask as an ``(H, W)`` int32 array (palette indices kept)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(np.int32)
