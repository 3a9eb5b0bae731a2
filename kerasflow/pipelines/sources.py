"""Data sources: each turns the ``data.source`` setting into one :class:`SourceData`.

Every source yields the same element contract once decoded: an image (uint8,
HWC) and a target, which is an integer class id (classification) or an
``(H, W)`` int32 map of class ids (segmentation). Each example also has a
stable string key (its path relative to the source, or ``name/index``) that
decides its split.

Sources come in three kinds:

* ``arrays``: decoded images in memory (digits, ``.npz``, :func:`from_arrays`);
* ``files``: image files on disk (class folders, manifests, segmentation pairs),
  decoded inside ``tf.data``;
* ``stream``: records read in a fixed order by a ``tf.data`` reader (TFRecord,
  TFDS), filtered by index for each split.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines import record_scan
from kerasflow.pipelines import scan as scan_lib

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
MASK_EXTENSIONS = (".png",)
SYNTHETIC_SOURCES = ("shapes_segmentation",)


@dataclass
class SourceData:
    """Examples of one source, before splitting.

    Attributes:
        name: the ``data.source`` value, for messages.
        kind: ``arrays``, ``files`` or ``stream``.
        task: ``classification`` or ``segmentation``.
        keys: a stable id per example (relative path or ``source/index``).
        labels: integer class ids ``(n,)``; zeros for segmentation.
        class_names: name of each class id (for segmentation: of each mask value).
        images: in-memory uint8 images ``(n, h, w, c)`` (``arrays``).
        masks: in-memory class-id masks ``(n, h, w)`` (``arrays`` segmentation).
        paths: image file paths (``files``).
        mask_paths: mask file paths (``files`` segmentation).
        parts: the source's own split of each example (TFDS ``train``, or a
            folder's ``train/``, ``val/``, ``test/``); ``None`` when it has none.
        positions: index of each example inside its part's reader (``stream``).
        reader: ``reader(part)`` returns the part's ``tf.data.Dataset`` of raw
            records in a fixed order (``stream``).
        decoder: maps one raw record to ``(image uint8 HWC, target)`` (``stream``).
        skipped: files left out under ``on_bad_image: skip``, with the reason.
        ignored: counts of files left out because of their extension.
        formats: image formats of the files (``files``), from the scan; None
            when unknown (any format is then decoded).
        sizes: ``(n, 2)`` height and width of each record's image, from the
            record scan (``stream``); None when the records were not scanned.
    """

    name: str
    kind: str
    keys: list[str]
    labels: np.ndarray
    class_names: list[str]
    task: str = "classification"
    images: np.ndarray | None = None
    masks: np.ndarray | None = None
    paths: list[str] | None = None
    mask_paths: list[str] | None = None
    parts: list[str] | None = None
    positions: np.ndarray | None = None
    reader: Callable | None = None
    decoder: Callable | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    formats: frozenset[str] | None = None
    sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)


# --------------------------------------------------------------------------- arrays
def from_arrays(
    images,
    labels=None,
    class_names: list[str] | None = None,
    masks=None,
    name: str = "arrays",
) -> SourceData:
    """A source from NumPy arrays already in memory.

    Args:
        images: uint8 ``(n, h, w)`` or ``(n, h, w, c)`` with c in 1, 3, 4
            (float arrays in 0..1 are scaled to 0..255).
        labels: integer class ids ``(n,)`` (classification).
        class_names: names of the class ids; default ``"0".."k-1"``.
        masks: integer class-id maps ``(n, h, w)`` (segmentation).
        name: used in keys (``name/000012``) and messages.

    Example:
        >>> src = from_arrays(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1]))
        >>> prepared = kerasflow.pipelines.prepare(cfg.data, seed=0, source=src)
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(
            f"Images of {name!r} must be (n, h, w) or (n, h, w, c) with c in 1, 3, 4. "
            f"Received: shape={images.shape}"
        )
    if images.dtype != np.uint8:
        scale = 255.0 if images.size and float(np.nanmax(images)) <= 1.0 else 1.0
        images = np.clip(np.round(images.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    n = len(images)
    keys = [f"{name}/{i:06d}" for i in range(n)]
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim == 4 and masks.shape[-1] == 1:
            masks = masks[..., 0]
        if masks.shape != images.shape[:3]:
            raise DataError(
                f"Masks of {name!r} must match the images' (n, h, w) {images.shape[:3]}. "
                f"Received: shape={masks.shape}"
            )
        masks = masks.astype(np.int32)
        num = int(masks.max()) + 1 if masks.size else 1
        names = list(class_names) if class_names else [f"class_{i}" for i in range(num)]
        _check_mask_values(masks, names, name)
        return SourceData(
            name=name, kind="arrays", keys=keys, labels=np.zeros(n, np.int64),
            class_names=names, task="segmentation", images=images, masks=masks,
        )  # fmt: skip
    if labels is None:
        raise DataError(f"Source {name!r} has images but no labels. Pass labels (or masks).")
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) != n:
        raise DataError(
            f"Source {name!r} has {n} images but {len(labels)} labels. Give one label per image."
        )
    num = int(labels.max()) + 1 if n else 0
    names = list(class_names) if class_names else [str(i) for i in range(num)]
    if n and (labels.min() < 0 or labels.max() >= len(names)):
        bad = int(labels[(labels < 0) | (labels >= len(names))][0])
        raise DataError(
            f"Label {bad} of {name!r} is outside class_names ({len(names)} classes: "
            f"{names}). Fix the labels or data.class_names."
        )
    return SourceData(
        name=name, kind="arrays", keys=keys, labels=labels, class_names=names, images=images
    )


def _check_mask_values(masks: np.ndarray, class_names: list[str], where: str) -> None:
    if masks.size and (masks.min() < 0 or masks.max() >= len(class_names)):
        raise DataError(
            f"Mask values of {where} reach {int(masks.max())}, outside class_names "
            f"({len(class_names)} classes: {class_names}). Fix the masks or data.class_names."
        )


def load_digits_source() -> SourceData:
    """scikit-learn's bundled 1,797 8x8 handwritten digits, as uint8 images 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16 in the original data; scale to an image's 0..255.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    data = from_arrays(images, labels, [str(c) for c in range(10)], name="digits")
    data.keys = [f"digits/{i:04d}" for i in range(len(labels))]
    return data


def load_npz_source(path: str, class_names: list[str] | None) -> SourceData:
    """A ``.npz`` file with ``images`` (or ``x``) and ``labels`` (or ``y``) or ``masks``."""
    if not os.path.isfile(path):
        raise DataError(f"data.source {path!r} does not exist. Point it at a .npz file.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read {path} as a NumPy .npz file: {exc}") from exc
    images = arrays.get("images", arrays.get("x"))
    if images is None:
        raise DataError(
            f"{path} has no 'images' (or 'x') array. Found: {sorted(arrays)}. "
            "Save images under one of those names."
        )
    labels = arrays.get("labels", arrays.get("y"))
    if class_names is None and "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"]]
    return from_arrays(images, labels, class_names, masks=arrays.get("masks"), name=Path(path).stem)


# --------------------------------------------------------------------------- files
def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _list_images(folder: Path, ignored: Counter, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() in extensions:
            out.append(p)
        else:
            ignored[p.suffix.lower() or "(none)"] += 1
    return out


def screen_files(
    paths: list[Path], data_config
) -> tuple[list[bool], list[tuple[str, str]], frozenset[str]]:
    """Cheap header scan of every file; applies ``on_bad_image`` and ``min_image_side``.

    Returns a keep flag per file, the ``(path, reason)`` of each skipped one and
    the set of image formats (``JPEG``, ``PNG``...) of the kept files, which lets
    the pipeline pick a decoder without per-image format checks.
    """
    min_side = data_config.min_image_side
    keep, skipped, formats = [], [], set()
    for p in paths:
        info = scan_lib.quick_scan(p)
        if info.problem is None:
            formats.add(info.format)
        if info.problem is None and min(info.width, info.height) < min_side:
            raise DataError(
                f"Image {p} is {info.width}x{info.height}, smaller than data.min_image_side="
                f"{min_side}. Remove it or lower data.min_image_side."
            )
        if info.problem is not None:
            if data_config.on_bad_image == "error":
                raise DataError(
                    f"Bad image file {p}: {info.problem}. Remove or replace it, or set "
                    "data.on_bad_image: skip to leave such files out (they are listed in "
                    "skipped_files.txt)."
                )
            log.warning("skipping %s: %s", p, info.problem)
            skipped.append((str(p), info.problem))
        keep.append(info.problem is None)
    return keep, skipped, frozenset(formats)


def _log_ignored(ignored: Counter, where) -> dict[str, int]:
    if ignored:
        log.warning(
            "%s: ignored %d files with unsupported extensions %s (supported: %s)",
            where, sum(ignored.values()), dict(ignored), ", ".join(IMAGE_EXTENSIONS),
        )  # fmt: skip
    return dict(ignored)


SPLIT_FOLDERS = {
    "train": "train", "training": "train", "val": "validation", "valid": "validation",
    "validation": "validation", "test": "test", "testing": "test",
}  # fmt: skip


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_folder_source(folder: str, data_config) -> SourceData:
    """A folder with one subfolder per class; class names sorted or from ``class_names``.

    A folder whose subfolders are all split names (``train``, ``val`` or
    ``validation``, ``test``), each with class subfolders, keeps those splits
    as the source's own (``data.split.mode: auto`` uses them).
    """
    root = Path(folder)
    top = _subdirs(root)
    if top and all(p.name.lower() in SPLIT_FOLDERS for p in top) and any(map(_subdirs, top)):
        bases = [(p, SPLIT_FOLDERS[p.name.lower()]) for p in top]
    else:
        bases = [(root, None)]
    found = sorted({c.name for base, _ in bases for c in _subdirs(base)})
    where = ", ".join(str(b) for b, _ in bases)
    if data_config.class_names is not None:
        names = list(data_config.class_names)
        missing = [c for c in names if c not in found]
        if missing:
            raise DataError(
                f"data.class_names lists {missing} but {where} has no such subfolder "
                f"(found: {found}). Add the folders or fix data.class_names."
            )
        extra = [c for c in found if c not in names]
        if extra:
            raise DataError(
                f"{where} has class folders {extra} that are not in data.class_names "
                f"{names}. Add them to class_names or move them out."
            )
    else:
        names = found
    if not names:
        raise DataError(
            f"{root} has no class subfolders. Put each class's images in "
            f"{root}/<class_name>/ (extensions {', '.join(IMAGE_EXTENSIONS)})."
        )
    ignored: Counter = Counter()
    paths, labels, parts = [], [], []
    for base, part in bases:
        present = {c.name for c in _subdirs(base)}
        for label, name in enumerate(names):
            if name not in present:
                continue  # a split folder may lack a class
            files = _list_images(base / name, ignored)
            if not files:
                raise DataError(
                    f"Class folder {base / name} has no images ({', '.join(IMAGE_EXTENSIONS)})."
                    " Add images or remove the class."
                )
            paths.extend(files)
            labels.extend([label] * len(files))
            parts.extend([part] * len(files))
    keep, skipped, formats = screen_files(paths, data_config)
    paths = [p for p, k in zip(paths, keep, strict=True) if k]
    labels = np.array([lab for lab, k in zip(labels, keep, strict=True) if k], np.int64)
    parts = [p for p, k in zip(parts, keep, strict=True) if k]
    return SourceData(
        name=folder, kind="files", keys=[_relative(p, root) for p in paths], labels=labels,
        class_names=names, paths=[str(p) for p in paths], skipped=skipped,
        ignored=_log_ignored(ignored, root), parts=parts if bases[0][1] else None,
        formats=formats,
    )  # fmt: skip


def _read_manifest(path: Path) -> list[tuple[int, str, str]]:
    rows = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {n} is not valid JSON: {exc}") from exc
            if not isinstance(obj, dict) or "path" not in obj or "label" not in obj:
                raise DataError(
                    f'{path} line {n} must be an object with "path" and "label". '
                    f"Received: {line.strip()[:80]!r}"
                )
            rows.append((n, str(obj["path"]), str(obj["label"])))
        return rows
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        for n, row in enumerate(reader, start=1):
            if not row or not "".join(row).strip():
                continue
            if n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2:
                raise DataError(f"{path} line {n} needs 'path,label'. Received: {row!r}")
            rows.append((n, row[0].strip(), row[1].strip()))
    return rows


def load_manifest_source(manifest: str, data_config) -> SourceData:
    """A CSV (``path,label`` with optional header) or JSONL manifest relative to ``root``."""
    path = Path(manifest)
    if not path.is_file():
        raise DataError(f"Manifest {path} does not exist. Point data.source at a .csv or .jsonl.")
    root = Path(data_config.root) if data_config.root else path.parent
    rows = _read_manifest(path)
    if not rows:
        raise DataError(f"Manifest {path} lists no images. Add 'path,label' rows.")
    if data_config.class_names is not None:
        names = list(data_config.class_names)
        for n, rel, label in rows:
            if label not in names:
                raise DataError(
                    f"{path} line {n}: label {label!r} of {rel} is not in data.class_names "
                    f"{names}. Fix the manifest or add the class."
                )
    else:
        names = sorted({label for _, _, label in rows})
    ignored: Counter = Counter()
    files, labels = [], []
    for n, rel, label in rows:
        p = root / rel
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored[p.suffix.lower() or "(none)"] += 1
            continue
        if not p.is_file():
            raise DataError(
                f"{path} line {n}: {p} does not exist. Fix the path (relative to {root}) "
                "or set data.root."
            )
        files.append(p)
        labels.append(names.index(label))
    keep, skipped, formats = screen_files(files, data_config)
    files = [p for p, k in zip(files, keep, strict=True) if k]
    labels = np.array([lab for lab, k in zip(labels, keep, strict=True) if k], np.int64)
    keys = [_relative(p, root) if root in p.parents else str(p) for p in files]
    return SourceData(
        name=manifest, kind="files", keys=keys, labels=labels, class_names=names,
        paths=[str(p) for p in files], skipped=skipped, ignored=_log_ignored(ignored, path),
        formats=formats,
    )  # fmt: skip


def _segmentation_class_names(root: Path, data_config, mask_paths: list[Path]) -> list[str]:
    if data_config.class_names is not None:
        return list(data_config.class_names)
    listing = root / "classes.txt"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    top = max((scan_lib.mask_max(p) for p in mask_paths), default=0)
    return [f"class_{i}" for i in range(top + 1)]


def load_segmentation_source(folder: str, data_config) -> SourceData:
    """``images/`` and ``masks/`` folders matched by file stem; masks are PNG class-id maps.

    Class names come from ``data.class_names``, else ``classes.txt`` in the
    folder (one name per line, line i names mask value i), else
    ``class_0..class_k`` up to the largest mask value.
    """
    root = Path(folder)
    ignored: Counter = Counter()
    images = _list_images(root / "images", ignored)
    masks = _list_images(root / "masks", ignored, extensions=MASK_EXTENSIONS)
    image_by_stem = {p.relative_to(root / "images").with_suffix("").as_posix(): p for p in images}
    mask_by_stem = {p.relative_to(root / "masks").with_suffix("").as_posix(): p for p in masks}
    orphans = sorted(set(mask_by_stem) - set(image_by_stem))
    if orphans:
        raise DataError(
            f"Mask {mask_by_stem[orphans[0]]} has no image with the same stem in {root / 'images'}"
            f" ({len(orphans)} such masks). Add the image or remove the mask."
        )
    unmasked = sorted(set(image_by_stem) - set(mask_by_stem))
    if unmasked:
        raise DataError(
            f"Image {image_by_stem[unmasked[0]]} has no mask {root / 'masks' / unmasked[0]}.png "
            f"({len(unmasked)} such images). Add the PNG mask or remove the image."
        )
    if not images:
        raise DataError(
            f"{root} has no images/ with masks/ pairs. Put images in {root}/images/ and PNG "
            f"class-index masks with the same stem in {root}/masks/."
        )
    stems = sorted(image_by_stem)
    img_paths = [image_by_stem[s] for s in stems]
    mask_paths = [mask_by_stem[s] for s in stems]
    keep_i, skipped, formats = screen_files(img_paths, data_config)
    keep_m, skipped_m, _ = screen_files(mask_paths, data_config)
    skipped += skipped_m
    keep = [a and b for a, b in zip(keep_i, keep_m, strict=True)]
    for s, k, ip, mp in zip(stems, keep, img_paths, mask_paths, strict=True):
        if not k:
            continue
        isz, msz = scan_lib.image_size(ip), scan_lib.image_size(mp)
        mode = scan_lib.image_mode(mp)
        if mode not in ("L", "1"):
            raise DataError(
                f"Mask {mp} is a PNG of mode {mode!r}; masks must be 8-bit grayscale ('L') "
                "class-index maps (palette and colour PNGs decode to colours, not class ids). "
                "Convert it, e.g. Image.fromarray(class_ids.astype('uint8')).save(path)."
            )
        if isz != msz:
            raise DataError(
                f"Mask {mp} is {msz[0]}x{msz[1]} but its image {ip} is {isz[0]}x{isz[1]}. "
                f"A mask must have its image's size ({s})."
            )
    stems = [s for s, k in zip(stems, keep, strict=True) if k]
    img_paths = [p for p, k in zip(img_paths, keep, strict=True) if k]
    mask_paths = [p for p, k in zip(mask_paths, keep, strict=True) if k]
    names = _segmentation_class_names(root, data_config, mask_paths)
    return SourceData(
        name=folder, kind="files", task="segmentation", keys=stems,
        labels=np.zeros(len(stems), np.int64), class_names=names,
        paths=[str(p) for p in img_paths], mask_paths=[str(p) for p in mask_paths],
        skipped=skipped, ignored=_log_ignored(ignored, root), formats=formats,
    )  # fmt: skip


# --------------------------------------------------------------------------- streams
def load_tfrecord_source(pattern: str, data_config) -> SourceData:
    """TFRecord files of ``tf.train.Example`` with an encoded image and a label (or mask).

    The feature names come from ``data.tfrecord``. Keys are ``<file>:<index>``.
    Every record's image (and mask) is decoded once here, so a bad one stops the
    run before training (``on_bad_image: error``) or is left out and listed as
    ``<file>#<index>`` (``skip``).
    """
    import tensorflow as tf

    from kerasflow.pipelines import transforms

    files = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise DataError(f"No TFRecord files match data.source {pattern!r}. Check the path.")
    spec = data_config.tfrecord
    segmentation = spec.mask_key is not None
    label_dtype = tf.int64 if spec.label_type == "int" else tf.string
    features = {spec.image_key: tf.io.FixedLenFeature([], tf.string)}
    if segmentation:
        features[spec.mask_key] = tf.io.FixedLenFeature([], tf.string)
    else:
        features[spec.label_key] = tf.io.FixedLenFeature([], label_dtype)

    def parse(record):
        return tf.io.parse_single_example(record, features)

    # One pass over labels only (images stay encoded), in batches: sizes, labels and keys.
    label_features = {k: v for k, v in features.items() if k != spec.image_key}
    keys, raw_labels, names_in_files = [], [], []
    for f in files:
        ds = tf.data.TFRecordDataset(f).map(
            lambda rec: tf.io.parse_single_example(rec, label_features),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        n = 0
        try:
            for batch in ds.batch(4096).as_numpy_iterator():
                if not segmentation:
                    values = batch[spec.label_key]
                    raw_labels.extend(
                        v.decode() if isinstance(v, bytes) else int(v) for v in values
                    )
                n += len(next(iter(batch.values())))
        except tf.errors.OpError as exc:
            raise DataError(
                f"Cannot read TFRecord {f} with features {sorted(features)} "
                f"(data.tfrecord): {exc.message}. Fix data.tfrecord or the file."
            ) from None
        keys.extend(f"{Path(f).name}:{i}" for i in range(n))
        names_in_files.extend(f"{f}#{i}" for i in range(n))
    if segmentation:
        names = list(data_config.class_names or [])
        if not names:
            raise DataError(
                "A TFRecord segmentation source needs data.class_names (one per mask value)."
            )
        labels = np.zeros(len(keys), np.int64)
    elif spec.label_type == "string":
        names = list(data_config.class_names or sorted(set(raw_labels)))
        for key, lab in zip(keys, raw_labels, strict=True):
            if lab not in names:
                raise DataError(
                    f"Record {key}: label {lab!r} is not in data.class_names {names}. "
                    "Fix the record or the class names."
                )
        labels = np.array([names.index(x) for x in raw_labels], np.int64)
    else:
        labels = np.array(raw_labels, np.int64)
        top = int(labels.max()) + 1 if len(labels) else 0
        names = list(data_config.class_names or [str(i) for i in range(top)])
        bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
        if len(bad):
            raise DataError(
                f"Record {keys[bad[0]]}: label {labels[bad[0]]} is outside data.class_names "
                f"({len(names)} classes). Fix the record or data.class_names."
            )
    names_t = names
    channels = data_config.channels

    def decoder(record):
        ex = parse(record)
        image = transforms.decode_image(ex[spec.image_key], channels)
        if segmentation:
            return image, transforms.decode_mask(ex[spec.mask_key])
        label = ex[spec.label_key]
        if spec.label_type == "string":
            hit = tf.cast(tf.equal(tf.constant(names_t), label), tf.int64)
            label = tf.argmax(hit, output_type=tf.int64)
        return image, label

    encoded = {spec.image_key: lambda data: transforms.decode_image(data, channels)}
    if segmentation:
        encoded[spec.mask_key] = transforms.decode_mask

    def features_of(record):
        parsed = tf.io.parse_single_example(
            record, {k: tf.io.VarLenFeature(tf.string) for k in encoded}
        )
        return {k: list(v.values.numpy()) for k, v in parsed.items()}

    keep, skipped, sizes = np.ones(len(keys), bool), [], None
    if data_config.scan_records:
        found = record_scan.scan_records(
            tf.data.TFRecordDataset(files), len(keys), _checked(decoder, segmentation), encoded,
            features_of,
        )  # fmt: skip
        keep, skipped = _screen_records(found, names_in_files, "", data_config)
        sizes = found.sizes[keep]

    def reader(part):
        del part  # TFRecord sources have no splits of their own
        return _keep_only(tf.data.TFRecordDataset(files), keep)

    keys = [k for k, ok in zip(keys, keep, strict=True) if ok]
    return SourceData(
        name=pattern, kind="stream", task="segmentation" if segmentation else "classification",
        keys=keys, labels=labels[keep], class_names=names, parts=[""] * len(keys),
        positions=np.arange(len(keys)), reader=reader, decoder=decoder, skipped=skipped,
        sizes=sizes,
    )  # fmt: skip


def _checked(decoder: Callable, segmentation: bool) -> Callable:
    """``decoder``'s image, also failing when a mask's size differs from its image's."""
    import tensorflow as tf

    def check(record):
        image, target = decoder(record)
        if not segmentation:
            return image
        same = tf.debugging.assert_equal(
            tf.shape(image)[:2],
            tf.shape(target),
            message="the mask's size differs from the image's",
        )
        with tf.control_dependencies([same]):
            return tf.identity(image)

    return check


def _keep_only(ds, keep: np.ndarray):
    """The records of ``ds`` whose ``keep`` entry is True."""
    import tensorflow as tf

    if keep.all():
        return ds
    mask = tf.constant(keep)
    return ds.enumerate().filter(lambda i, _r: tf.gather(mask, i)).map(lambda _i, r: r)


def _screen_records(
    found: record_scan.RecordScan, names: list[str], where: str, data_config
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Apply ``min_image_side`` and ``on_bad_image`` to a record scan: keep mask, skipped.

    ``names`` name each record (``<file>#<index>``); ``where`` follows the name in messages.
    """
    min_side = data_config.min_image_side
    small = np.flatnonzero(found.keep() & (found.sizes.min(axis=1) < min_side))
    if len(small):
        h, w = found.sizes[small[0]]
        raise DataError(
            f"The image of record {names[small[0]]} is {w}x{h}, smaller than "
            f"data.min_image_side={min_side}. Remove the record or lower data.min_image_side."
        )
    bad = sorted(found.problems.items())
    if bad and data_config.on_bad_image == "error":
        index, reason = bad[0]
        more = f" ({len(bad)} bad records in all)" if len(bad) > 1 else ""
        raise DataError(
            f"Bad record {names[index]}{where}: {reason}{more}. Fix or remove the record, "
            "or set data.on_bad_image: skip to leave such records out (they are listed in "
            "skipped_files.txt)."
        )
    skipped = [(names[i], reason) for i, reason in bad]
    for name, reason in skipped:
        log.warning("skipping %s: %s", name, reason)
    return found.keep(), skipped


def parse_tfds_source(source: str) -> tuple[str, str | None]:
    """``tfds:mnist:3.0.1`` -> ``("mnist", "3.0.1")``."""
    rest = source[len("tfds:") :]
    name, _, version = rest.partition(":")
    if not name:
        raise DataError(f"data.source {source!r} needs a dataset name: tfds:<name>[:<version>].")
    return name, version or None


def tfds_parts(data_config) -> dict[str, str]:
    """kerasflow split -> TFDS split to read; validation may be ``None`` (carved from train)."""
    return dict(data_config.split.source_names)


def load_tfds_source(source: str, data_config) -> SourceData:
    """A TensorFlow Datasets dataset through ``tfds.builder(...).as_dataset``.

    With ``data.tfds.download: false`` the data must already be prepared in
    ``data.tfds.data_dir``; nothing is downloaded. Encoded images (and masks)
    are decoded once here, like TFRecord records; a bad one is named by its
    ``tfds_id`` (``<dataset>-<split>.tfrecord-<shard>__<index>``).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from kerasflow.pipelines import transforms

    name, version = parse_tfds_source(source)
    opts = data_config.tfds
    full = f"{name}:{version}" if version else name
    try:
        builder = tfds.builder(full, data_dir=opts.data_dir)
    except Exception as exc:  # tfds raises several types for unknown names/versions
        raise DataError(
            f"TFDS dataset {full!r} is not available: {exc}. Check the name and version."
        ) from exc
    if opts.download:
        builder.download_and_prepare()
    features = builder.info.features
    for key in [opts.image_key, opts.mask_key or opts.label_key]:
        if key not in features:
            raise DataError(
                f"TFDS dataset {full!r} has no feature {key!r} (features: {sorted(features)}). "
                "Set data.tfds.image_key / label_key / mask_key."
            )
    segmentation = opts.mask_key is not None
    if segmentation:
        names = list(data_config.class_names or [])
        if not names:
            raise DataError(
                f"TFDS segmentation source {full!r} needs data.class_names "
                "(one name per mask value)."
            )
    else:
        label_feature = features[opts.label_key]
        names = list(getattr(label_feature, "names", None) or data_config.class_names or [])
        if data_config.class_names is not None and names != list(data_config.class_names):
            raise DataError(
                f"data.class_names {data_config.class_names} does not match the labels of "
                f"{full!r}: {names}. Remove class_names or fix it."
            )
    available = list(builder.info.splits.keys()) if builder.info.splits else None
    wanted = tfds_parts(data_config)
    read_config = tfds.ReadConfig(add_tfds_id=True)

    def open_part(part, skip_images):
        # Encoded images (and masks) are decoded by kerasflow after the split filter.
        skip = [opts.image_key] + ([opts.mask_key] if segmentation else [])
        decoders = {k: tfds.decode.SkipDecoding() for k in skip} if skip_images else None
        try:
            return builder.as_dataset(
                split=part, shuffle_files=False, read_config=read_config, decoders=decoders
            )
        except (AssertionError, ValueError, tf.errors.NotFoundError) as exc:
            where = opts.data_dir or "the default TFDS data_dir"
            raise DataError(
                f"TFDS dataset {full!r} split {part!r} cannot be read from {where}: {exc}. "
                "Prepare it there first or set data.tfds.download: true."
            ) from exc

    keys, labels, parts, positions = [], [], [], []
    used = []
    for split, part in wanted.items():
        base = part.split("[")[0]
        if available is not None and base not in available:
            if split == "validation":
                continue  # carved from train by the validation fraction
            raise DataError(
                f"TFDS dataset {full!r} has no split {part!r} for {split} (splits: "
                f"{available}). Set data.split.source_names.{split}."
            )
        if part in used:
            continue
        used.append(part)
        ds = open_part(part, skip_images=True)
        if segmentation:
            ds = ds.map(lambda ex: (ex["tfds_id"], tf.zeros([], tf.int64)))
        else:
            ds = ds.map(lambda ex: (ex["tfds_id"], tf.cast(ex[opts.label_key], tf.int64)))
        try:
            start = len(keys)
            for ids, labs in ds.batch(4096).as_numpy_iterator():
                keys.extend(k.decode() for k in ids)
                labels.extend(int(v) for v in labs)
            parts.extend([part] * (len(keys) - start))
            positions.extend(range(len(keys) - start))
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise DataError(f"TFDS dataset {full!r} split {part!r} failed to read: {exc}") from exc
    labels = np.array(labels, np.int64)
    if not segmentation and not names:
        names = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    channels = data_config.channels

    def decoder(ex):
        image = ex[opts.image_key]
        if image.dtype == tf.string:
            image = transforms.decode_image(image, channels)
        else:
            image = transforms.to_channels(image, channels)
        if segmentation:
            mask = ex[opts.mask_key]
            if mask.dtype == tf.string:
                return image, transforms.decode_mask(mask)
            if mask.shape.rank == 3:
                mask = mask[..., 0]
            return image, tf.cast(mask, tf.int32)
        return image, tf.cast(ex[opts.label_key], tf.int64)

    # Images TFDS stores encoded (tfds.features.Image) may be any bytes a builder was given.
    spec = open_part(used[0], skip_images=True).element_spec if used else {}
    encoded = {
        key: decode
        for key, decode in [
            (opts.image_key, lambda data: transforms.decode_image(data, channels)),
            (opts.mask_key, transforms.decode_mask),
        ]
        if key in spec and spec[key].dtype == tf.string
    }
    keep, skipped, keep_by_part = np.ones(len(keys), bool), [], {}
    scanned = bool(encoded) and data_config.scan_records
    sizes = np.zeros((len(keys), 2), np.int64)
    for part in used if scanned else []:
        rows = [i for i, p in enumerate(parts) if p == part]
        found = record_scan.scan_records(
            open_part(part, skip_images=True), len(rows), _checked(decoder, segmentation),
            encoded, lambda ex: {k: [ex[k].numpy()] for k in encoded},
        )  # fmt: skip
        where = f" of TFDS dataset {full!r} split {part!r}"
        keep_by_part[part], bad = _screen_records(
            found, [keys[i] for i in rows], where, data_config
        )
        keep[rows] = keep_by_part[part]
        sizes[rows] = found.sizes
        skipped.extend(bad)

    def reader(part):
        ds = open_part(part, skip_images=True)
        return _keep_only(ds, keep_by_part[part]) if part in keep_by_part else ds

    kept = np.flatnonzero(keep)
    parts = [parts[i] for i in kept]
    seen: Counter = Counter()  # positions count the kept records of each part
    positions = []
    for p in parts:
        positions.append(seen[p])
        seen[p] += 1
    return SourceData(
        name=source, kind="stream", task="segmentation" if segmentation else "classification",
        keys=[keys[i] for i in kept], labels=labels[kept], class_names=names, parts=parts,
        positions=np.array(positions, np.int64), reader=reader, decoder=decoder, skipped=skipped,
        sizes=sizes[kept] if scanned else None,
    )  # fmt: skip


# --------------------------------------------------------------------------- dispatch
def describe_source(source: str) -> str:
    """The kind of source a ``data.source`` string names (without reading it)."""
    low = source.lower()
    if source == "digits":
        return "digits"
    if low.startswith("tfds:"):
        return "tfds"
    if low.startswith("synthetic:"):
        return "synthetic"
    if low.endswith((".npz", ".npy")):
        return "npz"
    if low.endswith((".csv", ".jsonl")):
        return "manifest"
    if ".tfrecord" in low:
        return "tfrecord"
    p = Path(source)
    if p.is_dir():
        if (p / "images").is_dir() and (p / "masks").is_dir():
            return "segmentation"
        return "folder"
    return "unknown"


def synthetic_dir(name: str, data_config) -> Path:
    """Where ``synthetic:<name>`` is generated: ``data.root`` or ``~/.cache/kerasflow``."""
    base = Path(data_config.root) if data_config.root else Path("~/.cache/kerasflow").expanduser()
    return base / f"synthetic_{name}"


def load_source(data_config) -> SourceData:
    """Read the source named by ``data.source`` (file scans happen here, once)."""
    source = data_config.source
    kind = describe_source(source)
    if kind == "digits":
        data = load_digits_source()
    elif kind == "npz":
        data = load_npz_source(source, data_config.class_names)
    elif kind == "manifest":
        data = load_manifest_source(source, data_config)
    elif kind == "tfrecord":
        data = load_tfrecord_source(source, data_config)
    elif kind == "tfds":
        data = load_tfds_source(source, data_config)
    elif kind == "segmentation":
        data = load_segmentation_source(source, data_config)
    elif kind == "folder":
        data = load_folder_source(source, data_config)
    elif kind == "synthetic":
        from kerasflow.pipelines import synthetic

        name = source.split(":", 1)[1]
        if name not in SYNTHETIC_SOURCES:
            raise DataError(
                f"Unknown synthetic source {source!r}. Choose one of: "
                + ", ".join(f"synthetic:{n}" for n in SYNTHETIC_SOURCES)
            )
        folder = synthetic.ensure_shapes_segmentation(synthetic_dir(name, data_config))
        data = load_segmentation_source(str(folder), data_config)
        data.name = source
    else:
        raise DataError(
            f"data.source {source!r} is not a known source: not 'digits', not an existing "
            "folder, and not a .npz, .csv/.jsonl, .tfrecord, tfds:<name> or "
            "synthetic:<name>. Check the path."
        )
    names = data_config.class_names
    if names is not None and kind in ("digits", "npz") and list(names) != data.class_names:
        raise DataError(
            f"data.class_names {names} does not match the classes found "
            f"in {source!r}: {data.class_names}. Remove class_names or fix it."
        )
    if len(data) == 0:
        raise DataError(
            f"data.source {source!r} has no usable examples"
            + (f" ({len(data.skipped)} skipped as bad images)" if data.skipped else "")
            + ". Add data."
        )
    return data
