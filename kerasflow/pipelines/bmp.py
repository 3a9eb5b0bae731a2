"""Palette (indexed) BMP files: decoded with TF graph ops, and BMP headers checked.

TensorFlow's BMP decoder reads an 8-bit BMP as gray levels (it ignores the
palette, so the colours come out wrong) and rejects 1-, 2- and 4-bit BMPs.
:func:`decode_indexed_bmp` decodes uncompressed 1/2/4/8-bit BMPs with the
palette, in plain TF ops, so it runs inside ``tf.data`` maps and in the
serving signature; :func:`kerasflow.pipelines.transforms.decode_image` goes
through :func:`decode_palette_aware`, which sends palette BMPs to it.

:func:`header_problem` says, from a file's first bytes, which BMPs neither
decoder handles (RLE-compressed, OS/2 headers, 16-bit, unusual bit fields), so
the file scan rejects them with a clear message instead of training on wrong
pixels.

Layout (all little-endian): ``BM``; pixel data offset at byte 10; DIB header
size at 14; width at 18; height at 22 (negative: rows top-down, otherwise
bottom-up); bits per pixel at 28; compression at 30; colours used at 46; the
palette follows the DIB header as 4-byte BGRA entries; each row is padded to 4
bytes and its pixels are packed from the most significant bit.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2

HEAD_BYTES = 66  # through the bit-field masks at 54..65
_PALETTE_SIZE = 256
# 32-bit BI_BITFIELDS with these R, G, B masks is plain BGRA, which TF decodes.
_BGRA_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF)
CONVERT_HINT = "Convert it to PNG (e.g. Image.open(path).save(new_path_with_png_suffix))."


def _u(head: tf.Tensor, offset: int, size: int) -> tf.Tensor:
    """Unsigned little-endian integer of ``size`` bytes at ``offset`` (int64)."""
    part = tf.cast(head[offset : offset + size], tf.int64)
    return tf.reduce_sum(part * tf.constant([256**k for k in range(size)], tf.int64))


def _head(data: tf.Tensor, size: int) -> tf.Tensor:
    """The first ``size`` bytes as uint8, zero-padded when the data is shorter."""
    head = tf.io.decode_raw(tf.strings.substr(data, 0, size), tf.uint8)
    return tf.pad(head, [[0, size - tf.size(head)]])


def decode_palette_aware(data: tf.Tensor, decode: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """``decode_indexed_bmp(data)`` for a palette BMP, else ``decode(data)`` (RGB uint8).

    Other images pay only for a two-byte test and one ``tf.cond``.
    """
    data = tf.convert_to_tensor(data, tf.string)

    def bmp_branch():
        return tf.cond(is_indexed_bmp(data), lambda: decode_indexed_bmp(data), lambda: decode(data))

    is_bmp = tf.equal(tf.strings.substr(data, 0, 2), "BM")
    return cond_taken_branch_only(is_bmp, bmp_branch, lambda: decode(data))


def cond_taken_branch_only(pred: tf.Tensor, true_fn, false_fn) -> tf.Tensor:
    """``tf.cond(pred, true_fn, false_fn)`` whose ``If`` ops run only the taken branch
    (:func:`_run_only_taken_branch`); :func:`~kerasflow.pipelines.transforms.decode_image`
    tests for JPEG with it too."""
    if tf.executing_eagerly():
        return tf.cond(pred, true_fn, false_fn)
    graph = tf.compat.v1.get_default_graph()
    first = len(graph.get_operations())
    out = tf.cond(pred, true_fn, false_fn)
    _run_only_taken_branch(graph.get_operations()[first:])
    return out


def _run_only_taken_branch(ops) -> None:
    """Keep these ``If`` ops as function calls instead of lowering them to Switch/Merge.

    Lowered, every op of the untaken branch still runs as a dead node for every
    image. Measured in ``tf.data`` (CPU time per 64x64 JPEG, 2,000 records):
    plain ``tf.io.decode_image`` 68 us; through this ``tf.cond`` lowered 101 us,
    kept as calls 84 us. The private ``_set_attr`` is only an optimisation, so a
    TensorFlow without it just keeps the lowered form.
    """
    for op in ops:
        if op.type in ("If", "StatelessIf") and hasattr(op, "_set_attr"):
            op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))


def is_indexed_bmp(data: tf.Tensor) -> tf.Tensor:
    """Scalar bool: the bytes are a BMP (Windows header) with 1 to 8 bits per pixel."""
    head = _head(data, 30)
    bpp = _u(head, 28, 2)
    return (
        tf.equal(head[0], ord("B"))
        & tf.equal(head[1], ord("M"))
        & (_u(head, 14, 4) >= 40)
        & (bpp >= 1)
        & (bpp <= 8)
    )


def decode_indexed_bmp(data: tf.Tensor) -> tf.Tensor:
    """Decode an uncompressed 1/2/4/8-bit palette BMP to uint8 ``(H, W, 3)`` RGB.

    Pixels equal Pillow's ``Image.open(f).convert("RGB")``. Fails with
    ``InvalidArgumentError`` on a compressed (RLE) or truncated file; the
    error's message says which.

    Example:
        >>> rgb = decode_indexed_bmp(tf.io.read_file("palette.bmp"))
    """
    data = tf.convert_to_tensor(data, tf.string)
    head = _head(data, 54)
    offset, dib = _u(head, 10, 4), _u(head, 14, 4)
    width, bpp = _u(head, 18, 4), _u(head, 28, 2)
    height = _u(head, 22, 4)
    top_down = height >= 2**31
    rows = tf.where(top_down, 2**32 - height, height)
    colours = _u(head, 46, 4)
    colours = tf.where(
        tf.equal(colours, 0), tf.bitwise.left_shift(tf.constant(1, tf.int64), bpp), colours
    )
    colours = tf.minimum(colours, _PALETTE_SIZE)
    # Like Pillow: an offset that ignores the palette means the pixels follow it.
    offset = tf.where(tf.equal(offset, 14 + dib), offset + 4 * colours, offset)
    row_bytes = (width * bpp + 31) // 32 * 4
    length = tf.cast(tf.strings.length(data), tf.int64)
    failed = _first_failure(
        [
            (
                tf.equal(_u(head, 30, 4), 0),
                f"Compressed (RLE) BMP is not supported. {CONVERT_HINT}",
            ),
            (width > 0, "BMP width is not positive"),
            (rows > 0, "BMP height is 0"),
            (length >= 14 + dib + 4 * colours, "Truncated BMP: the palette is cut short"),
            (length >= offset + row_bytes * rows, "Truncated BMP: the pixel rows are cut short"),
        ]
    )
    # 0 when every check passes; adding it makes everything below wait for the checks
    # (a corrupt header must fail here, not allocate a range of 2**31 rows).
    zero = _fail_if(failed)
    offset, dib, width, rows = offset + zero, dib + zero, width + zero, rows + zero
    palette = tf.io.decode_raw(tf.strings.substr(data, 14 + dib, 4 * colours), tf.uint8)
    pixels = tf.io.decode_raw(tf.strings.substr(data, offset, row_bytes * rows), tf.uint8)
    # BGRA entries -> RGB; indices past the palette read black, as in Pillow.
    palette = tf.reverse(tf.reshape(palette, [-1, 4])[:, :3], axis=[1])
    palette = tf.pad(palette, [[0, _PALETTE_SIZE - tf.shape(palette)[0]], [0, 0]])
    packed = tf.reshape(tf.cast(pixels, tf.int64), tf.stack([rows, row_bytes, 1]))
    per_byte = 8 // bpp
    shifts = bpp * (per_byte - 1 - tf.range(per_byte, dtype=tf.int64))
    mask = tf.bitwise.left_shift(tf.constant(1, tf.int64), bpp) - 1
    indices = tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed, shifts), mask)
    indices = tf.reshape(indices, tf.stack([rows, row_bytes * per_byte]))[:, :width]
    # Rows are stored bottom-up unless the height is negative.
    order = tf.where(top_down, tf.range(rows), tf.range(rows - 1, -1, -1))
    image = tf.gather(palette, tf.gather(indices, order))
    image.set_shape([None, None, 3])
    return image


def _first_failure(checks: list[tuple[tf.Tensor, str]]) -> tf.Tensor:
    """The message of the first check that is False, or ``""``."""
    failed = tf.constant("")
    for ok, message in reversed(checks):
        failed = tf.where(ok, failed, message)
    return failed


def _fail_if(message: tf.Tensor) -> tf.Tensor:
    """int64 0 when ``message`` is empty, else an ``InvalidArgumentError`` that quotes it.

    ``tf.debugging.assert_*`` ops are stateful, and one stateful op anywhere in
    ``decode_image`` makes its ``If`` stateful, which slowed every JPEG decode in
    ``tf.data`` by about 20 us; ``StringToNumber`` fails as well and is stateless.
    """
    return tf.strings.to_number(tf.where(tf.equal(message, ""), "0", message), tf.int64)


def header_problem(head: bytes) -> str | None:
    """Why a BMP (its first :data:`HEAD_BYTES` bytes) cannot be decoded right, or None.

    Checked: the OS/2 header, compression (RLE, embedded JPEG/PNG, bit
    fields other than plain BGRA) and bit depths other than 1, 4, 8, 24, 32 (Pillow,
    which ``kerasflow data check`` decodes with, cannot read 2-bit BMPs).
    """
    if len(head) < 30:
        return f"truncated BMP header ({len(head)} bytes)"
    dib = int.from_bytes(head[14:18], "little")
    if dib < 40:
        return f"OS/2 BMP header ({dib} bytes) is not supported. {CONVERT_HINT}"
    bpp = int.from_bytes(head[28:30], "little")
    if bpp not in (1, 4, 8, 24, 32):
        return f"{bpp}-bit BMP is not supported (1, 4, 8, 24 or 32 bits are). {CONVERT_HINT}"
    compression = int.from_bytes(head[30:34], "little") if len(head) >= 34 else 0
    if compression in (1, 2):
        kind = "RLE8" if compression == 1 else "RLE4"
        return f"RLE-compressed BMP ({kind}) is not supported. {CONVERT_HINT}"
    masks = tuple(int.from_bytes(head[i : i + 4], "little") for i in (54, 58, 62))
    if compression == 3 and (bpp != 32 or masks != _BGRA_MASKS):
        return f"BMP with bit fields {[hex(m) for m in masks]} is not supported. {CONVERT_HINT}"
    if compression not in (0, 3):
        return f"BMP compression {compression} is not supported. {CONVERT_HINT}"
    return None
