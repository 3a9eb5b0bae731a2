"""What every source shares: :class:`SourceData`, target kinds, and the file and record screens.

Every source yields the same element contract once decoded: an image (uint8,
HWC) and a target of one of three kinds (:data:`TARGETS`):

* ``class``: an int64 class id;
* ``mask``: an ``(H, W)`` int32 map of class ids;
* ``multi_hot``: a float32 ``(K,)`` 0/1 vector, one entry per label (multi-label).

Each example also has a stable string key (its path relative to the source,
or ``name/index``) that decides its split.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines import record_scan
from kerasflow.pipelines import scan as scan_lib
from kerasflow.progress import progress

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
MASK_EXTENSIONS = (".png",)
TARGETS = ("class", "mask", "multi_hot")
LABEL_SEPARATOR = "|"


@dataclass
class SourceData:
    """Examples of one source, before splitting.

    Attributes:
        name: the ``data.source`` value, for messages.
        kind: ``arrays``, ``files`` or ``stream``.
        keys: a stable id per example (relative path or ``source/index``).
        labels: ``class``: int64 class ids ``(n,)``; ``multi_hot``: uint8 0/1
            ``(n, K)``; ``mask``: zeros ``(n,)``.
        class_names: name of each class id (``mask``: of each mask value;
            ``multi_hot``: of each label column).
        target: ``class``, ``mask`` or ``multi_hot`` (see :data:`TARGETS`).
        images: in-memory uint8 images ``(n, h, w, c)`` (``arrays``).
        masks: in-memory class-id masks ``(n, h, w)`` (``arrays`` with ``mask`` targets).
        paths: image file paths (``files``).
        mask_paths: mask file paths (``files`` with ``mask`` targets).
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
    target: str = "class"
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


# --------------------------------------------------------------------------- targets
def check_target_name(target: str | None) -> None:
    """Reject a ``target`` argument that is not ``None`` or one of :data:`TARGETS`."""
    if target is not None and target not in TARGETS:
        raise ValueError(
            f"target must be None or one of {', '.join(TARGETS)} (boxes are read by "
            f"prepare_detection). Received: target={target!r}"
        )


def check_target(found: str, wanted: str | None, where: str, hint: str = "") -> None:
    """Raise when a source whose examples carry ``found`` targets is asked for ``wanted`` ones.

    Args:
        found: the target kind the source holds.
        wanted: the kind asked for; ``None`` takes whatever the source holds.
        where: the source, for the message.
        hint: what to do, specific to the source family (for ``multi_hot`` asked
            of a one-label-per-image source).

    Raises:
        DataError: the kinds differ; the message says what to change.
    """
    check_target_name(wanted)
    if wanted is None or wanted == found:
        return
    if wanted == "multi_hot" and found == "class":
        raise DataError(
            f"{where} has one label per image, but multi-label (multi_hot) targets were asked "
            f"for. {hint or 'Give each image a list of labels.'}"
        )
    if wanted == "class" and found == "multi_hot":
        raise DataError(
            f"{where} is multi-label (a set of labels per image), but one class per image was "
            "asked for. Set experiment.task: multilabel, or give each image one label."
        )
    if found == "mask":
        raise DataError(
            f"{where} holds segmentation masks, but {wanted} targets were asked for. "
            "Set experiment.task: segmentation, or point data.source at labelled images."
        )
    raise DataError(
        f"{where} has no segmentation masks ({found} targets), but masks were asked for. "
        "Use a folder with images/ and masks/ (or a TFRecord/TFDS mask_key), or set "
        "experiment.task to match the data."
    )


def multi_hot(label_sets: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """A uint8 ``(n, num_labels)`` 0/1 matrix from each example's label ids."""
    out = np.zeros((len(label_sets), num_labels), np.uint8)
    for row, ids in enumerate(label_sets):
        out[row, list(ids)] = 1
    return out


def check_multi_hot(labels: np.ndarray, where: str, keys: Sequence[str] | None = None) -> None:
    """Raise unless ``labels`` is an ``(n, K)`` array of 0s and 1s, naming the first bad row."""
    if labels.ndim != 2:
        raise DataError(
            f"Multi-label targets of {where} must be an (n, K) 0/1 array. "
            f"Received: shape={labels.shape}"
        )
    bad = np.flatnonzero(~np.isin(labels, (0, 1)).all(axis=1))
    if len(bad):
        row = int(bad[0])
        name = keys[row] if keys is not None else f"row {row}"
        raise DataError(
            f"Multi-label targets of {where} must be 0 or 1; {name} has "
            f"{np.asarray(labels[row]).tolist()}. Fix the labels."
        )


def label_names(found: Sequence[str], given: Sequence[str] | None) -> list[str]:
    """``data.class_names`` when given, else the sorted set of names found."""
    return list(given) if given is not None else sorted(set(found))


def check_mask_values(masks: np.ndarray, class_names: list[str], where: str) -> None:
    """Raise when a mask value has no name in ``class_names``."""
    if masks.size and (masks.min() < 0 or masks.max() >= len(class_names)):
        raise DataError(
            f"Mask values of {where} reach {int(masks.max())}, outside class_names "
            f"({len(class_names)} classes: {class_names}). Fix the masks or data.class_names."
        )


# --------------------------------------------------------------------------- files
def relative_key(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators: a file example's key."""
    return path.relative_to(root).as_posix()


def list_images(folder: Path, ignored: Counter, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """Files under ``folder`` (recursively, sorted) with an image extension.

    Other files are counted in ``ignored`` by extension; hidden files are left out.
    """
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
    bad, small = [], []
    for p in progress(paths, "checking image headers", unit="file"):
        info = scan_lib.quick_scan(p)
        if info.problem is None:
            formats.add(info.format)
            if min(info.width, info.height) < min_side:
                small.append(
                    f"{p} is {info.width}x{info.height}, smaller than "
                    f"data.min_image_side={min_side}"
                )
        elif data_config.on_bad_image == "error":
            bad.append(f"{p}: {info.problem}")
        else:
            log.warning("skipping %s: %s", p, info.problem)
            skipped.append((str(p), info.problem))
        keep.append(info.problem is None)
    # Every file is scanned before any error, so one run names every file to fix.
    if bad:
        raise DataError(
            f"{_count(bad, 'bad image file')}:\n{_listing(bad)}\nRemove or replace them, or "
            "set data.on_bad_image: skip to leave such files out (they are listed in "
            "skipped_files.txt)."
        )
    if small:
        raise DataError(
            f"{_count(small, 'image')} too small:\n{_listing(small)}\n"
            "Remove them or lower data.min_image_side."
        )
    return keep, skipped, frozenset(formats)


LISTED = 50  # bad files named in one error; the rest are counted


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _listing(items: list[str]) -> str:
    """Indented lines, the first :data:`LISTED` of them and a count of the rest."""
    lines = [f"  {item}" for item in items[:LISTED]]
    if len(items) > LISTED:
        lines.append(f"  ... and {len(items) - LISTED} more")
    return "\n".join(lines)


def log_ignored(ignored: Counter, where) -> dict[str, int]:
    """Log the files left out for their extension; returns the counts as a dict."""
    if ignored:
        log.warning(
            "%s: ignored %d files with unsupported extensions %s (supported: %s)",
            where, sum(ignored.values()), dict(ignored), ", ".join(IMAGE_EXTENSIONS),
        )  # fmt: skip
    return dict(ignored)


# --------------------------------------------------------------------------- records
def checked_decoder(decoder: Callable, has_mask: bool) -> Callable:
    """``decoder``'s image, also failing when a mask's size differs from its image's."""
    import tensorflow as tf

    def check(record):
        image, target = decoder(record)
        if not has_mask:
            return image
        same = tf.debugging.assert_equal(
            tf.shape(image)[:2],
            tf.shape(target),
            message="the mask's size differs from the image's",
        )
        with tf.control_dependencies([same]):
            return tf.identity(image)

    return check


def keep_only(ds, keep: np.ndarray):
    """The records of ``ds`` whose ``keep`` entry is True."""
    import tensorflow as tf

    if keep.all():
        return ds
    mask = tf.constant(keep)
    return ds.enumerate().filter(lambda i, _r: tf.gather(mask, i)).map(lambda _i, r: r)


def screen_records(
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
        raise DataError(
            f"{_count(bad, 'bad record')}{where}:\n{_listing([f'{names[i]}: {r}' for i, r in bad])}\n"
            "Fix or remove them, or set data.on_bad_image: skip to leave such records out "
            "(they are listed in skipped_files.txt)."
        )
    skipped = [(names[i], reason) for i, reason in bad]
    for name, reason in skipped:
        log.warning("skipping %s: %s", name, reason)
    return found.keep(), skipped
