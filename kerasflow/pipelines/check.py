"""``kerasflow data check``: scan every file once and report problems before training.

Reports unreadable, truncated, empty and non-image files, files whose content
does not match their extension, labels or mask values outside
``class_names``, class counts and image-size statistics. Nothing is printed
here; :meth:`CheckReport.to_text` gives the text the CLI shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines import scan as scan_lib
from kerasflow.pipelines.detection_data import load_detection
from kerasflow.pipelines.sources import load_source
from kerasflow.progress import progress


@dataclass
class CheckReport:
    """The result of :func:`check_data`.

    Attributes:
        source: the ``data.source`` checked.
        target: the target kind checked: ``class``, ``mask``, ``multi_hot`` or ``boxes``.
        num_examples: usable examples.
        class_counts: examples per class (``mask`` and ``multi_hot``: images
            containing it; ``boxes``: boxes).
        problems: ``(path, reason)`` for every bad file.
        notes: ``(path, note)`` for suspicious but usable files (e.g. PNG data
            in a ``.jpg``).
        errors: problems that stop the source from loading at all.
        sizes: ``(width, height)`` of every good file scanned.
        modes: counts of PIL modes (RGB, L, P, CMYK, ...).
        ignored: files left out for their extension, by extension.
    """

    source: str
    target: str = "class"
    num_examples: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing would stop or degrade training."""
        return not self.problems and not self.errors

    def size_stats(self) -> dict[str, dict[str, float]]:
        """min / median / max / mean of widths and heights."""
        if not self.sizes:
            return {}
        arr = np.array(self.sizes, dtype=np.float64)
        out = {}
        for i, name in enumerate(("width", "height")):
            col = arr[:, i]
            out[name] = {
                "min": float(col.min()),
                "median": float(np.median(col)),
                "max": float(col.max()),
                "mean": round(float(col.mean()), 1),
            }
        return out

    def to_text(self) -> str:
        """A human-readable report."""
        lines = [
            f"source: {self.source} ({self.target} targets), {self.num_examples} usable examples"
        ]
        for err in self.errors:
            lines.append(f"ERROR: {err}")
        if self.class_counts:
            counts = ", ".join(f"{k}: {v}" for k, v in self.class_counts.items())
            lines.append(f"classes ({len(self.class_counts)}): {counts}")
        for name, st in self.size_stats().items():
            lines.append(
                f"{name}: min {st['min']:.0f}, median {st['median']:.0f}, "
                f"max {st['max']:.0f}, mean {st['mean']}"
            )
        if self.modes:
            lines.append("modes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.modes.items())))
        if self.ignored:
            total = sum(self.ignored.values())
            by_ext = ", ".join(f"{k} {v}" for k, v in sorted(self.ignored.items()))
            lines.append(f"ignored (unsupported extension): {total} ({by_ext})")
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines.extend(f"  {path}: {reason}" for path, reason in self.problems)
        if self.notes:
            lines.append(f"notes ({len(self.notes)}):")
            lines.extend(f"  {path}: {note}" for path, note in self.notes)
        lines.append(
            "OK" if self.ok else f"{len(self.problems) + len(self.errors)} problem(s) found"
        )
        return "\n".join(lines)


def check_data(data_config, target: str | None = None) -> CheckReport:
    """Scan every file of ``data.source`` once (fully decoding each) and report.

    Bad files never raise here, whatever ``on_bad_image`` says; a source that
    cannot load at all (an empty class folder, a mask without an image, a
    label outside ``class_names``, a source that cannot give ``target``
    targets) is reported in ``errors``.

    Args:
        data_config: the ``data:`` section.
        target: the target kind the run needs (its task's): ``class``,
            ``mask``, ``multi_hot`` or ``boxes`` (detection sources, see
            :func:`check_detection`); ``None`` takes what the source holds.
    """
    if target == "boxes":
        return check_detection(data_config)
    report = CheckReport(source=data_config.source)
    lenient = data_config.model_copy(update={"on_bad_image": "skip"})
    try:
        src = load_source(lenient, target)
    except DataError as exc:
        report.errors.append(str(exc))
        return report
    report.target = src.target
    report.num_examples = len(src)
    report.ignored = dict(src.ignored)
    report.problems.extend(src.skipped)
    modes: Counter = Counter()
    bad_idx = set()
    if src.kind == "files":
        bad_idx = _scan_files(src.paths, src.mask_paths or [], report, modes)
    elif src.kind == "arrays":
        h, w = src.images.shape[1:3]
        report.sizes = [(int(w), int(h))] * len(src)
        modes[{1: "L", 3: "RGB", 4: "RGBA"}[src.images.shape[-1]]] = len(src)
    else:
        _scan_stream(src, report, modes)
    report.modes = dict(modes)
    report.num_examples = len(src) - len(bad_idx)
    good = [i for i in range(len(src)) if i not in bad_idx]
    if src.target == "mask":
        report.class_counts = _mask_class_counts(src, good, report)
    elif src.target == "multi_hot":
        counts = src.labels[good].sum(axis=0, dtype=np.int64)
        report.class_counts = {
            name: int(c) for name, c in zip(src.class_names, counts, strict=True)
        }
    else:
        counts = np.bincount(src.labels[good], minlength=len(src.class_names))
        report.class_counts = {
            name: int(c) for name, c in zip(src.class_names, counts, strict=True)
        }
    return report


def _scan_files(paths, mask_paths, report: CheckReport, modes: Counter) -> set[int]:
    """Fully decode every image (and mask) file; the indices of the images that are bad."""
    bad = set()
    n = len(paths)
    files = list(paths) + list(mask_paths)
    for i, path in enumerate(progress(files, "decoding every file", unit="file")):
        info = scan_lib.full_scan(path)
        if info.problem is not None:
            report.problems.append((path, info.problem))
            bad.add(i % n)
            continue
        if info.note:
            report.notes.append((path, info.note))
        if i < n:
            report.sizes.append((info.width, info.height))
            modes[info.mode] += 1
    return bad


def check_detection(data_config) -> CheckReport:
    """:func:`check_data` for a detection source (COCO JSON, VOC folder, TFDS, synthetic).

    Bad annotations and bad image files are problems; ``class_counts`` counts
    boxes; crowd boxes and difficult objects left out are notes.
    """
    import tensorflow as tf

    report = CheckReport(source=data_config.source, target="boxes")
    try:
        data = load_detection(data_config.model_copy(update={"on_bad_image": "skip"}))
    except DataError as exc:
        report.errors.append(str(exc))
        return report
    report.problems.extend(data.skipped)
    report.notes.extend(
        (data_config.source, f"left out {n} {what}") for what, n in data.ignored.items()
    )
    modes: Counter = Counter()
    counts = np.zeros(data.num_classes, np.int64)
    if data.source is not None:
        src = data.source
        bad = _scan_files(src.paths, [], report, modes)
        good = [i for i in range(len(src)) if i not in bad]
        for i in good:
            counts += np.bincount(src.classes[i], minlength=data.num_classes)
        report.num_examples = len(good)
    for split in data.streams:
        try:
            for image, _, classes in data.raw(split).as_numpy_iterator():
                report.sizes.append((int(image.shape[1]), int(image.shape[0])))
                counts += np.bincount(classes, minlength=data.num_classes)[: data.num_classes]
                modes["decoded"] += 1
                report.num_examples += 1
        except tf.errors.OpError as exc:
            report.problems.append((f"{data_config.source} {split}", f"unreadable ({exc.message})"))
    report.modes = dict(modes)
    report.class_counts = {n: int(c) for n, c in zip(data.class_names, counts, strict=True)}
    return report


def _scan_stream(src, report: CheckReport, modes: Counter) -> None:
    import tensorflow as tf

    if src.sizes is not None:  # the record scan decoded every record already
        report.sizes.extend((int(w), int(h)) for h, w in src.sizes)
        modes["decoded"] += len(src.sizes)
        return
    parts = list(dict.fromkeys(src.parts))
    for part in parts:
        ds = src.reader(part).map(src.decoder)
        try:
            for image, _ in ds.as_numpy_iterator():
                report.sizes.append((int(image.shape[1]), int(image.shape[0])))
                modes["decoded"] += 1
        except tf.errors.OpError as exc:
            report.problems.append((f"{src.name} {part}".strip(), f"unreadable ({exc.message})"))


def _mask_class_counts(src, good: list[int], report: CheckReport) -> dict[str, int]:
    names = src.class_names
    counts = np.zeros(len(names), np.int64)
    if src.kind == "arrays":
        masks = (src.masks[i] for i in good)
    elif src.kind == "files":
        masks = (scan_lib.read_mask(src.mask_paths[i]) for i in good)
    else:
        return {}
    for i, mask in zip(good, masks, strict=False):
        present = np.unique(mask)
        outside = present[present >= len(names)]
        if len(outside):
            where = src.mask_paths[i] if src.mask_paths else src.keys[i]
            report.problems.append(
                (where, f"mask values {outside.tolist()} outside class_names ({len(names)})")
            )
            present = present[present < len(names)]
        counts[present] += 1
    return {name: int(c) for name, c in zip(names, counts, strict=True)}
