"""Reading image files once with Pillow, to validate them before any training.

``quick_scan`` is what every ``prepare`` does: the file's size, its magic
bytes, its header (through ``PIL.Image.open``), for JPEG and PNG the
end-of-image marker that a truncated file lacks, and for BMP the layouts that no
decoder here reads right (RLE, 16-bit, OS/2 headers; see ``bmp.py``).
``full_scan`` (used by ``kerasflow data check``) also decodes the pixels;
``scan_bytes`` does the same for encoded bytes held in a record. Training
itself decodes in ``tf.data``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasflow.pipelines import bmp

MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}
EXTENSION_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}


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


def _check_content(info: FileInfo, source: Path | bytes, size: int, head: bytes, tail: bytes):
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
    if fmt == "BMP" and (problem := bmp.header_problem(head)):
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


def quick_scan(path: str | os.PathLike) -> FileInfo:
    """Cheap validation: empty, non-image, truncated or unreadable header."""
    path = Path(path)
    info = FileInfo(str(path))
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(bmp.HEAD_BYTES)
            fh.seek(max(0, size - 1024))
            tail = fh.read()
    except OSError as exc:
        info.problem = f"unreadable ({exc.strerror or exc})"
        return info
    _check_content(info, path, size, head, tail)
    expected = EXTENSION_FORMAT.get(path.suffix.lower())
    if info.problem is None and expected and expected != info.format:
        info.note = f"{info.format} data in a {path.suffix} file"
    return info


def full_scan(path: str | os.PathLike) -> FileInfo:
    """``quick_scan`` plus a full decode of the pixels (slower; for ``data check``)."""
    info = quick_scan(path)
    _check_pixels(info, Path(path))
    return info


def scan_bytes(data: bytes, name: str) -> FileInfo:
    """``full_scan`` of encoded image bytes (e.g. one TFRecord record's image) called ``name``."""
    info = FileInfo(name)
    _check_content(info, data, len(data), data[: bmp.HEAD_BYTES], data[-1024:])
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
