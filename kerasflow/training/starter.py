"""``kerasflow init``: scan a data source once and write a first run config that trains as written.

The scan is :func:`kerasflow.pipelines.check.check_data` (every file decoded
once): classes and counts, image sizes and modes, bad files. From those it
picks an image size, channels, a model, a batch size and an epoch budget that
fit the data, and writes them as a commented YAML config.

Example:
    >>> from kerasflow.training.starter import starter_config
    >>> start = starter_config("path/to/images")      # doctest: +SKIP
    >>> Path("my.yaml").write_text(start.text)          # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from kerasflow import tasks
from kerasflow.config import DataConfig, build_config
from kerasflow.errors import DataError
from kerasflow.models import names as model_names
from kerasflow.pipelines.check import CheckReport, check_data

# Modes whose pixels carry no colour: such a set trains on one channel.
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
# Model preferences, smallest data first; the first registered one of the task's kind wins.
SMALL_MODELS = ("simple_cnn", "unet", "centernet")
LARGE_MODELS = ("resnet18", "unet", "centernet")
SMALL_SET = 5000  # examples under which a small CNN trains better and faster than a ResNet
IMBALANCE_RATIO = 3.0  # largest / smallest class count that earns a warning
SIDES = (16, 32, 48, 64, 96, 128, 160, 192, 224)


@dataclass
class StarterConfig:
    """What ``kerasflow init`` found and wrote.

    Attributes:
        text: the commented YAML config.
        values: the config's values as plain data (what ``text`` holds).
        report: the scan of the data.
        warnings: imbalance, bad files and other things the user should read.
    """

    text: str
    values: dict
    report: CheckReport
    warnings: list[str] = field(default_factory=list)


def pick_side(sizes: list[tuple[int, int]], num_examples: int) -> int:
    """An image side near the images' typical short side, smaller for small sets."""
    if not sizes:
        return 64
    short = float(np.median([min(w, h) for w, h in sizes]))
    cap = 64 if num_examples < SMALL_SET else 128 if num_examples < 50_000 else 224
    fitting = [s for s in SIDES if s <= min(short, cap)]
    return fitting[-1] if fitting else SIDES[0]


def pick_channels(modes: dict[str, int]) -> int:
    """1 when every scanned image is grayscale, else 3 (decoded streams count as colour)."""
    return 1 if modes and set(modes) <= GRAY_MODES else 3


def pick_batch_size(num_train: int) -> int:
    """About 30 or more steps an epoch, at most 128 examples a batch."""
    for size in (128, 64, 32, 16):
        if num_train >= 30 * size:
            return size
    return 8


def pick_epochs(num_train: int) -> tuple[int, int]:
    """(epochs, early-stopping patience): more passes for small sets, early stopping ends sooner."""
    if num_train < 2_000:
        return 15, 5
    if num_train < 20_000:
        return 20, 6
    return 12, 4


def pick_model(model_kind: str, num_examples: int, side: int) -> tuple[str, dict]:
    """A registered model of ``model_kind`` sized for the data, and its params."""
    wanted = SMALL_MODELS if num_examples < SMALL_SET else LARGE_MODELS
    available = model_names(model_kind)
    name = next((m for m in wanted if m in available), available[0])
    params: dict = {}
    if name == "simple_cnn":
        params = {"width": 32, "depth": 2 if side <= 32 else 3, "dense_units": 128}
    elif name in ("resnet18",):
        params = {"dropout": 0.2}
    return name, params


def _experiment_name(source: str) -> str:
    """``tfds:mnist`` -> ``mnist``; a folder -> its name; a manifest file -> its folder's name."""
    if ":" in source and not Path(source).exists():
        stem = source.split(":", 1)[1].split(":")[0].split("/")[0]
    else:
        path = Path(source).resolve()
        stem = path.parent.name if path.is_file() else path.name
    return re.sub(r"[^0-9A-Za-z_.-]+", "-", stem).strip("-").lower() or "experiment"


def _flow(value) -> str:
    """One YAML value on one line (JSON is YAML)."""
    return json.dumps(value)


def _imbalance(counts: dict[str, int]) -> str | None:
    present = {k: v for k, v in counts.items() if v > 0}
    if len(present) < 2:
        return None
    low = min(present, key=present.get)
    high = max(present, key=present.get)
    if present[high] >= IMBALANCE_RATIO * present[low]:
        return (
            f"classes are imbalanced: {high!r} has {present[high]} examples, {low!r} "
            f"{present[low]} ({present[high] / present[low]:.1f}x); accuracy alone will flatter "
            "the model, read the per-class recall in the report, and collect more of the "
            "rare classes if you can"
        )
    return None


def starter_config(source: str, task: str = "classification") -> StarterConfig:
    """Scan ``source`` once and build a first, commented run config for it.

    Args:
        source: what ``data.source`` accepts: a class-per-folder folder, a CSV or
            JSONL manifest, ``tfds:NAME``, ...
        task: ``experiment.task``.

    Raises:
        DataError: the source cannot be read at all (its reason), or holds no
            usable example.
    """
    task_obj = tasks.get(task)
    report = check_data(DataConfig(source=source), task_obj.target)
    if report.errors:
        raise DataError(f"kerasflow init cannot read {source}: " + "; ".join(report.errors))
    if report.num_examples == 0:
        raise DataError(f"kerasflow init found no usable image in {source}. Check the path.")
    warnings = []
    if report.problems:
        warnings.append(
            f"{len(report.problems)} bad file(s) will be skipped (data.on_bad_image: skip): "
            + ", ".join(str(p) for p, _ in report.problems)
        )
    imbalance = _imbalance(report.class_counts)
    if imbalance:
        warnings.append(imbalance)

    n = report.num_examples
    num_train = int(n * 0.7)
    side = pick_side(report.sizes, n)
    channels = pick_channels(report.modes)
    model, params = pick_model(task_obj.model_kind, n, side)
    batch = pick_batch_size(num_train)
    epochs, patience = pick_epochs(num_train)
    name = _experiment_name(source)
    stats = report.size_stats()
    sizes_text = (
        f"{stats['width']['median']:.0f}x{stats['height']['median']:.0f} median "
        f"(width {stats['width']['min']:.0f}-{stats['width']['max']:.0f}, "
        f"height {stats['height']['min']:.0f}-{stats['height']['max']:.0f})"
        if stats
        else "unknown"
    )
    modes_text = ", ".join(f"{k} {v}" for k, v in sorted(report.modes.items())) or "unknown"
    counts_text = ", ".join(f"{k}: {v}" for k, v in report.class_counts.items())

    lines = [
        f"# Written by `kerasflow init {source}` from one scan of the data:",
        f"#   {n} usable images in {len(report.class_counts)} classes ({counts_text})",
        f"#   sizes {sizes_text}; modes {modes_text}",
    ]
    if report.problems:
        lines.append(f"#   {len(report.problems)} bad file(s), left out by on_bad_image: skip:")
        lines += [f"#     {path}: {reason}" for path, reason in report.problems]
    for warning in warnings[1 if report.problems else 0 :]:
        lines.append(f"#   WARNING: {warning}")
    lines += [
        "# Every other field keeps its default: `kerasflow config show THIS_FILE` lists them,",
        "# and the config reference in docs/ describes each.",
        "experiment:",
        f"  name: {_flow(name)}",
        f"  task: {task}",
        "  seed: 42",
        "",
        "data:",
        f"  source: {_flow(source)}",
        f"  image_size: [{side}, {side}]   # near the images' median short side"
        + (", kept small for a small set" if n < SMALL_SET else ""),
        f"  channels: {channels}              # "
        + ("every image is grayscale" if channels == 1 else "colour images"),
        f"  batch_size: {batch}          # about {max(1, num_train // batch)} steps an epoch",
        "  split: {train: 0.7, validation: 0.1, test: 0.2, stratify: true}",
        "  augment:                # mild and label-safe; add horizontal_flip: true when a",
        "    rotation: 0.03        # mirrored image keeps its class (not for digits or text)",
        "    translation: 0.1",
        f"  on_bad_image: {'skip' if report.problems else 'error'}"
        + (
            "      # the bad files above are left out and listed in the run"
            if report.problems
            else "     # a bad file stops the run, named"
        ),
        "",
        "model:",
        f"  name: {model}"
        + ("          # small data: a small CNN" if model == "simple_cnn" else ""),
        f"  params: {_flow(params)}",
        "",
        "compile:",
        "  optimizer: {name: adam, learning_rate: 0.001}",
        "  schedule: {name: cosine, warmup_epochs: 2}",
        "",
        "train:",
        f"  epochs: {epochs}              # early stopping usually ends sooner",
        "  checkpoint: {monitor: val_loss}",
        f"  early_stopping: {{enabled: true, monitor: val_loss, patience: {patience}}}",
        "",
    ]
    text = "\n".join(lines)
    values = yaml.safe_load(text)
    build_config(values, origin="(kerasflow init)")  # what it writes must load as written
    return StarterConfig(text=text, values=values, report=report, warnings=warnings)
