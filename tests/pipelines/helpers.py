"""Helpers that write tiny real image files for the pipelines tests."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from kerasflow.config import DataConfig

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fox": (30, 30, 200)}
ALL_TRAIN = {"train": 1.0, "validation": 0.0, "test": 0.0}


def data_config(**data):
    """A validated ``DataConfig`` from keyword fields.

    Only the data section is validated: the pipelines read any source whatever
    task a run config would pair it with.
    """
    return DataConfig.model_validate(data)


def examples(prepared, split: str = "train") -> list:
    """``(image, target)`` NumPy pairs of a split, unbatched, in dataset order, no augmentation."""
    return list(prepared.dataset(split, training=False, batch=False).as_numpy_iterator())


def tf_example(features: dict) -> bytes:
    """A serialised ``tf.train.Example``: feature name -> list of bytes, ints or floats.

    A value may also be a ready ``tf.train.Feature`` (e.g. an empty ``bytes_list``).
    """
    import tensorflow as tf

    def feature(values):
        if isinstance(values, tf.train.Feature):
            return values
        values = list(values)
        if values and isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if values and isinstance(values[0], float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    feats = {k: feature(v) for k, v in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def gradient_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image whose every column differs (so a flip is visible)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 120, h, dtype=np.float64)[:, None, None]
    img = np.concatenate([x + 0 * y, y + 0 * x, np.full((h, w, 1), 60.0)], axis=-1)
    return np.clip(img + rng.integers(0, 5, size=img.shape), 0, 255).astype(np.uint8)


def save(img: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **kw)
    return path


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_class_folder(root: Path, per_class: int = 4, size=(12, 10)) -> Path:
    """``root/{cat,dog,fox}/`` with PNG and JPEG files of one flat colour each."""
    for name, colour in COLOURS.items():
        for i in range(per_class):
            img = np.zeros((*size, 3), np.uint8) + np.array(colour, np.uint8)
            ext = "png" if i % 2 == 0 else "jpg"
            save(img, root / name / f"{name}_{i}.{ext}")
    return root


def make_segmentation_folder(root: Path, count: int = 6, size: int = 16) -> Path:
    """``images/`` + ``masks/``: left half class 1, a square of class 2, rest 0."""
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[:, : size // 2] = 1
        mask[2:6, 10:14] = 2
        img = (np.stack([mask * 100, mask * 50, 255 - mask * 80], -1) + i).astype(np.uint8)
        save(img, root / "images" / f"s{i}.png")
        save(mask, root / "masks" / f"s{i}.png")
    return root


def write_bmp(
    path: Path,
    indices: np.ndarray,
    palette: list[tuple[int, int, int]],
    bpp: int,
    top_down: bool = False,
    compression: int = 0,
    pixels: bytes | None = None,
) -> Path:
    """A palette BMP written byte by byte (Pillow writes only 1- and 8-bit ones).

    ``indices`` is ``(H, W)`` palette indices; ``pixels`` replaces the packed
    rows (e.g. RLE8 data with ``compression=1``).
    """
    h, w = indices.shape
    row_bytes = (w * bpp + 31) // 32 * 4
    rows = []
    for row in indices:
        bits = "".join(format(int(v), f"0{bpp}b") for v in row).ljust(row_bytes * 8, "0")
        rows.append(int(bits, 2).to_bytes(row_bytes, "big"))
    if pixels is None:
        pixels = b"".join(rows if top_down else rows[::-1])
    table = b"".join(bytes([b, g, r, 0]) for r, g, b in palette)
    offset = 14 + 40 + len(table)
    dib = struct.pack(
        "<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bpp, compression, len(pixels),
        2835, 2835, len(palette), 0,
    )  # fmt: skip
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + dib + table + pixels)
    return path


def make_tfds(data_dir: Path, class_name: str, features: dict, splits: dict) -> Path:
    """Prepare a real TFDS dataset offline in ``data_dir``.

    The dataset is named after ``class_name`` in snake_case (``ToyPictures`` ->
    ``toy_pictures``, version 1.0.0); ``features`` maps names to TFDS features
    and ``splits`` maps split names to lists of ``(key, example)``.
    """
    import tensorflow_datasets as tfds

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(rows) for name, rows in splits.items()}

    def _generate_examples(self, rows):
        yield from rows

    builder = type(
        class_name,
        (tfds.core.GeneratorBasedBuilder,),
        {
            "VERSION": tfds.core.Version("1.0.0"),
            "code_path": None,  # defined in a test helper: no checksums file to look up
            "_info": _info,
            "_split_generators": _split_generators,
            "_generate_examples": _generate_examples,
        },
    )
    builder(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


def normalized(pixels, cfg) -> np.ndarray:
    """``data.normalize`` of 0..255 pixels, written out independently of kerasflow's code."""
    x = np.asarray(pixels, np.float64) / 255.0
    mode, k = cfg.normalize, x.shape[-1]
    if mode == "unit":
        return x
    if mode == "symmetric":
        return 2 * x - 1
    if mode == "none":
        return x * 255
    if mode == "imagenet":
        mean, std = (
            ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if k == 3 else ((0.449,), (0.226,))
        )
    else:
        mean, std = cfg.mean, cfg.std
    return (x - np.array(mean)) / np.array(std)
