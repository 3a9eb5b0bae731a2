"""Image files on disk, decoded inside ``tf.data``: class folders, manifests, segmentation pairs.

* a folder with one subfolder per class (``class`` targets);
* a CSV or JSONL manifest of paths with one ``label`` (``class``) or a set of
  ``labels`` (``multi_hot``) each;
* a folder with ``images/`` and ``masks/`` matched by stem (``mask`` targets).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines import scan as scan_lib
from kerasflow.pipelines.sources.source_data import (
    IMAGE_EXTENSIONS,
    LABEL_SEPARATOR,
    MASK_EXTENSIONS,
    SourceData,
    check_target,
    label_names,
    list_images,
    log_ignored,
    multi_hot,
    relative_key,
    screen_files,
)

SPLIT_FOLDERS = {
    "train": "train", "training": "train", "val": "validation", "valid": "validation",
    "validation": "validation", "test": "test", "testing": "test",
}  # fmt: skip
FOLDER_MULTI_HOT_HINT = (
    "A class-per-folder tree gives one label per image; for multi-label data use a CSV/JSONL "
    "manifest with a `labels` column (label names separated by |)."
)
MANIFEST_MULTI_HOT_HINT = (
    "Its `label` column gives one label per image; for multi-label data write a `labels` "
    "column instead (CSV header `path,labels`, names separated by |; JSONL "
    '`"labels": [...]`).'
)


def check_two_classes(labels: np.ndarray, names: list[str], where: str) -> None:
    """Raise unless the usable images of a ``class`` source cover at least two classes.

    A classifier of one class learns nothing (it scores accuracy 1.0 whatever
    it sees), so such data is refused before anything trains.
    """
    present = sorted({int(i) for i in labels})
    if len(present) >= 2:
        return
    found = [names[i] for i in present]
    raise DataError(
        f"{where} has images of {len(present)} class{'' if len(present) == 1 else 'es'} "
        f"({found}); classification needs at least two. Add a folder (or manifest rows) of "
        f"images for every other class. Received: {len(labels)} usable images, "
        f"class names {names[:10]}"
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------- class folders
def load_folder_source(folder: str, data_config, target: str | None = None) -> SourceData:
    """A folder with one subfolder per class; class names sorted or from ``class_names``.

    A folder whose subfolders are all split names (``train``, ``val`` or
    ``validation``, ``test``), each with class subfolders, keeps those splits
    as the source's own (``data.split.mode: auto`` uses them).
    """
    root = Path(folder)
    check_target("class", target, f"data.source {folder!r}", FOLDER_MULTI_HOT_HINT)
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
            files = list_images(base / name, ignored)
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
    check_two_classes(labels, names, f"{where}")
    return SourceData(
        name=folder, kind="files", keys=[relative_key(p, root) for p in paths], labels=labels,
        class_names=names, paths=[str(p) for p in paths], skipped=skipped,
        ignored=log_ignored(ignored, root), parts=parts if bases[0][1] else None,
        formats=formats,
    )  # fmt: skip


# --------------------------------------------------------------------------- manifests
@dataclass
class ManifestRow:
    """One image of a manifest: its line number, path (as written) and label name(s).

    ``labels`` holds one name for a ``label`` manifest, any number (none
    included) for a multi-label ``labels`` manifest.
    """

    line: int
    path: str
    labels: list[str]


def split_labels(cell: str) -> list[str]:
    """``"cat|dog"`` -> ``["cat", "dog"]``; an empty cell is no label."""
    return [p.strip() for p in cell.split(LABEL_SEPARATOR) if p.strip()]


def read_manifest(path: Path) -> tuple[list[ManifestRow], bool]:
    """The rows of a CSV or JSONL manifest and whether it is multi-label.

    CSV: ``path,label`` rows (the header is optional), or a ``path,labels``
    header followed by rows whose second cell lists label names separated by
    ``|`` (an empty cell: an image with no label). JSONL: one object per line
    with ``"path"`` and either ``"label"`` or ``"labels"`` (a list of names or
    a ``|``-separated string); every line uses the same one.

    Raises:
        DataError: a malformed line, naming the file and line.
    """
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(path)
    rows: list[ManifestRow] = []
    multi = False
    with path.open(newline="") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            head = [c.strip().lower() for c in row[:2]]
            if n == 1 and head in (["path", "label"], ["path", "labels"]):
                multi = head[1] == "labels"
                continue
            if multi:
                rows.append(
                    ManifestRow(n, row[0].strip(), split_labels(row[1] if len(row) > 1 else ""))
                )
                continue
            if len(row) < 2:
                raise DataError(f"{path} line {n} needs 'path,label'. Received: {row!r}")
            rows.append(ManifestRow(n, row[0].strip(), [row[1].strip()]))
    return rows, multi


def _read_jsonl(path: Path) -> tuple[list[ManifestRow], bool]:
    rows: list[ManifestRow] = []
    multi = None
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {n} is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict) or "path" not in obj or not ({"label", "labels"} & set(obj)):
            raise DataError(
                f'{path} line {n} must be an object with "path" and "label" (or "labels" for '
                f"multi-label data). Received: {line.strip()[:80]!r}"
            )
        this = "labels" in obj
        if multi is None:
            multi = this
        elif this != multi:
            want, have = ("labels", "label") if multi else ("label", "labels")
            raise DataError(
                f'{path} line {n} has "{have}" but the lines before it have "{want}". '
                "Use one of them on every line."
            )
        if not multi:
            rows.append(ManifestRow(n, str(obj["path"]), [str(obj["label"])]))
            continue
        value = obj["labels"]
        if isinstance(value, str):
            names = split_labels(value)
        elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            names = [str(v).strip() for v in value]
        else:
            raise DataError(
                f'{path} line {n}: "labels" must be a list of names or a "|"-separated string. '
                f"Received: {value!r}"
            )
        rows.append(ManifestRow(n, str(obj["path"]), names))
    return rows, bool(multi)


def load_manifest_source(manifest: str, data_config, target: str | None = None) -> SourceData:
    """A CSV or JSONL manifest (see :func:`read_manifest`) of paths relative to ``root``.

    ``root`` is ``data.root``, else the manifest's folder. Class names come
    from ``data.class_names`` (a name outside it is an error naming the line),
    else the sorted names found. A ``labels`` manifest gives ``multi_hot``
    targets, a ``label`` one ``class`` targets.
    """
    path = Path(manifest)
    if not path.is_file():
        raise DataError(f"Manifest {path} does not exist. Point data.source at a .csv or .jsonl.")
    root = Path(data_config.root) if data_config.root else path.parent
    rows, multi = read_manifest(path)
    check_target(
        "multi_hot" if multi else "class", target, f"Manifest {path}", MANIFEST_MULTI_HOT_HINT
    )
    if not rows:
        column = "labels" if multi else "label"
        raise DataError(f"Manifest {path} lists no images. Add 'path,{column}' rows.")
    names = label_names([x for row in rows for x in row.labels], data_config.class_names)
    index = {name: i for i, name in enumerate(names)}
    for row in rows:
        for label in row.labels:
            if label not in index:
                raise DataError(
                    f"{path} line {row.line}: label {label!r} of {row.path} is not in "
                    f"data.class_names {names}. Fix the manifest or add the class."
                )
    ignored: Counter = Counter()
    files, ids = [], []
    for row in rows:
        p = root / row.path
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored[p.suffix.lower() or "(none)"] += 1
            continue
        if not p.is_file():
            raise DataError(
                f"{path} line {row.line}: {p} does not exist. Fix the path (relative to {root}) "
                "or set data.root."
            )
        files.append(p)
        ids.append([index[label] for label in row.labels])
    keep, skipped, formats = screen_files(files, data_config)
    files = [p for p, k in zip(files, keep, strict=True) if k]
    ids = [i for i, k in zip(ids, keep, strict=True) if k]
    labels = multi_hot(ids, len(names)) if multi else np.array([i[0] for i in ids], np.int64)
    if not multi:
        check_two_classes(labels, names, f"Manifest {path}")
    keys = [relative_key(p, root) if root in p.parents else str(p) for p in files]
    return SourceData(
        name=manifest, kind="files", keys=keys, labels=labels, class_names=names,
        target="multi_hot" if multi else "class", paths=[str(p) for p in files],
        skipped=skipped, ignored=log_ignored(ignored, path), formats=formats,
    )  # fmt: skip


# --------------------------------------------------------------------------- segmentation
def _segmentation_class_names(root: Path, data_config, mask_paths: list[Path]) -> list[str]:
    if data_config.class_names is not None:
        return list(data_config.class_names)
    listing = root / "classes.txt"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    top = max((scan_lib.mask_max(p) for p in mask_paths), default=0)
    return [f"class_{i}" for i in range(top + 1)]


def load_segmentation_source(folder: str, data_config, target: str | None = None) -> SourceData:
    """``images/`` and ``masks/`` folders matched by file stem; masks are PNG class-id maps.

    Class names come from ``data.class_names``, else ``classes.txt`` in the
    folder (one name per line, line i names mask value i), else
    ``class_0..class_k`` up to the largest mask value.
    """
    root = Path(folder)
    check_target("mask", target, f"data.source {folder!r}")
    ignored: Counter = Counter()
    images = list_images(root / "images", ignored)
    masks = list_images(root / "masks", ignored, extensions=MASK_EXTENSIONS)
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
        name=folder, kind="files", target="mask", keys=stems,
        labels=np.zeros(len(stems), np.int64), class_names=names,
        paths=[str(p) for p in img_paths], mask_paths=[str(p) for p in mask_paths],
        skipped=skipped, ignored=log_ignored(ignored, root), formats=formats,
    )  # fmt: skip
