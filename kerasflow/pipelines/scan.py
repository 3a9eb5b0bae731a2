"""Reading image files once with Pillow, to validate them before any training.

``quick_scan`` is what every ``prepare`` does: the file's size, its magic
bytes, its header (through ``PIL.Image.open``) and, for JPEG and PNG, the
end-of-image marker that a truncated file lacks. ``full_scan`` (used by
``kerasflow data check``) also decodes the pixels. Training itself decodes in
``tf.data``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def quick_scan(path: str | os.PathLike) -> FileInfo:
    """Cheap validation: empty, non-image, truncated or unreadable header."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    info = FileInfo(str(path))
    try:
        size = path.stat().st_size
        if size == 0:
            info.problem = "empty file (0 bytes)"
            return info
        with path.open("rb") as fh:
            head = fh.read(16)
            fh.seek(max(0, size - 1024))
            tail = fh.read()
    except OSError as exc:
        info.problem = f"unreadable ({exc.strerror or exc})"
        return info
    fmt = sniff(head)
    if fmt is None:
        info.problem = _describe_non_image(head)
        return info
    info.format = fmt
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        info.problem = "truncated JPEG (no end-of-image marker)"
        return info
    if fmt == "PNG" and b"IEND" not in tail:
        info.problem = "truncated PNG (no IEND chunk)"
        return info
    try:
        with Image.open(path) as im:
            info.width, info.height = im.size
            info.mode = im.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        info.problem = f"unreadable {fmt} header ({exc})"
        return info
    if info.width == 0 or info.height == 0:
        info.problem = f"image has zero size {info.width}x{info.height}"
        return info
    expected = EXTENSION_FORMAT.get(path.suffix.lower())
    if expected and expected != fmt:
        info.note = f"{fmt} data in a {path.suffix} file"
    return info


def full_scan(path: str | os.PathLike) -> FileInfo:
    """``quick_scan`` plus a full decode of the pixels (slower; for ``data check``)."""
    from PIL import Image

    info = quick_scan(path)
    if info.problem is not None:
        return info
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except (OSError, ValueError, SyntaxError) as exc:
        info.problem = f"corrupt {info.format} data ({exc})"
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
