"""Detection data: COCO, Pascal VOC, TFDS and synthetic sources, and their tf.data pipelines.

``prepare_detection(data_config, seed)`` reads the source named by
``data.source`` once and returns a :class:`DetectionData`, whose
``dataset(split)`` gives ``(image, {"boxes": [M, 4], "classes": [M]})``
elements, boxes padded to ``data.detection.max_boxes`` with class ``-1``
(box format: :mod:`kerasflow.pipelines.box_ops`). The detection trainer passes
``targets_fn`` to turn the boxes into the model's dense training targets inside
the same map.

Sources (``data.source``):
    * a COCO ``.json`` annotation file; ``file_name`` is relative to
      ``data.root`` (default: the JSON's folder). Crowd boxes are ignored.
    * a Pascal VOC folder with ``Annotations/*.xml`` and ``JPEGImages/``.
      ``difficult`` objects are ignored.
    * ``tfds:<name>[:<version>]`` with an ``objects`` feature of normalised
      ``bbox`` and ``label`` (``voc``, ``coco/2017``); splits come from the
      dataset (``data.split.source_names``).
    * ``synthetic:shapes_detection``: shapes on textured backgrounds, written
      once as a COCO set under ``data.root`` (see :func:`write_shapes_detection`).

Bad annotations (a box outside the image, a negative or zero width or
height, an unknown class, a missing image file) raise :class:`DataError`
naming the file and the value, or with ``data.on_bad_image: skip`` skip that
image and count it in :attr:`DetectionData.skipped`.

Pipeline of a split: read -> decode -> letterbox (``data.resize``: pad or
stretch) -> cache (uint8) -> shuffle -> random crop/scale, flips, photometric
ops (training only) -> pad boxes -> targets -> batch -> prefetch. Images stay
uint8 pixels; the detector's first layer applies ``data.normalize`` (as for
classification and segmentation).
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import box_ops
from kerasflow.pipelines import transforms as T
from kerasflow.pipelines.builder import PreparedData, Step, _describe_op
from kerasflow.pipelines.splits import assign_splits

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
SPLITS = ("train", "validation", "test")
SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
# Boxes may reach this many pixels past the image edge (rounding in annotation tools).
EDGE_TOLERANCE = 1.0


# --------------------------------------------------------------------------- sources
@dataclass
class DetectionSource:
    """Annotations read from a file source: one entry per usable image.

    ``boxes[i]`` is ``[n, 4]`` float32 ``[ymin, xmin, ymax, xmax]`` fractions,
    ``classes[i]`` ``[n]`` int32 ids into ``class_names``, ``sizes[i]`` the
    ``(width, height)`` the annotation gives the image.
    """

    name: str
    class_names: list[str]
    keys: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    classes: list[np.ndarray] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    formats: frozenset[str] | None = None  # from the file scan; None: unknown

    def __len__(self) -> int:
        return len(self.paths)


class _BadImage(Exception):
    """One image's annotations are unusable (raised, or counted under on_bad_image: skip)."""


def _check_box(box_xyxy, width: float, height: float, what: str) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        raise _BadImage(f"{what} is not finite: {box_xyxy}")
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        side = "width" if x1 - x0 <= 0 else "height"
        raise _BadImage(f"{what} has a negative or zero {side}: {box_xyxy}")
    tol = EDGE_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise _BadImage(f"{what} {box_xyxy} lies outside the {width:g}x{height:g} image")
    x0, x1 = max(x0, 0.0), min(x1, width)
    y0, y1 = max(y0, 0.0), min(y1, height)
    return np.array([y0 / height, x0 / width, y1 / height, x1 / width], np.float32)


def _class_index(names: list[str], given: list[str] | None) -> dict[str, int]:
    order = list(given) if given else list(names)
    return {n: i for i, n in enumerate(order)}


def _add(src: DetectionSource, key, path, boxes, classes, size) -> None:
    src.sizes.append((int(size[0]), int(size[1])))
    src.keys.append(key)
    src.paths.append(str(path))
    src.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
    src.classes.append(np.asarray(classes, np.int32).reshape(-1))


def _bad(src: DetectionSource, where: str, key: str, why: str, on_bad: str) -> None:
    if on_bad == "skip":
        src.skipped.append((key, why))
        return
    raise DataError(
        f"{where}: {why}. Fix the annotation, or set data.on_bad_image: skip to skip "
        "such images (they are counted)."
    )


def load_coco(path: str | os.PathLike, image_root=None, class_names=None, on_bad="error"):
    """Read a COCO-style JSON file (``images``, ``annotations``, ``categories``).

    Class ids follow ``class_names`` when given (categories are matched by
    name), else the categories sorted by id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"COCO annotation file not found: {path}. Check data.source.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path} has no {key!r} list; is it a COCO annotation file?")
    root = Path(image_root) if image_root else path.parent
    categories = sorted(data["categories"], key=lambda c: c["id"])
    cat_name = {c["id"]: str(c["name"]) for c in categories}
    index = _class_index([cat_name[c["id"]] for c in categories], class_names)
    src = DetectionSource(name=str(path), class_names=list(index))
    per_image: dict = {}
    for i, ann in enumerate(data["annotations"]):
        per_image.setdefault(ann.get("image_id"), []).append((i, ann))
    for image in data["images"]:
        key = str(image.get("file_name"))
        where = f"{path}: image {key!r} (id {image.get('id')})"
        try:
            width, height = float(image["width"]), float(image["height"])
            file = root / key
            if not file.is_file():
                raise _BadImage(f"image file {file} is missing")
            boxes, classes = [], []
            for i, ann in per_image.get(image.get("id"), []):
                if ann.get("iscrowd", 0):
                    src.ignored["crowd boxes"] += 1
                    continue
                cat = ann.get("category_id")
                name = cat_name.get(cat)
                if name is None or name not in index:
                    raise _BadImage(
                        f"annotations[{i}] has unknown class category_id={cat!r}"
                        + (f" ({name!r} is not in data.class_names)" if name else "")
                    )
                bbox = ann.get("bbox")
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise _BadImage(f"annotations[{i}].bbox must be [x, y, w, h]: {bbox!r}")
                x, y, w, h = bbox
                if w < 0 or h < 0:
                    raise _BadImage(f"annotations[{i}].bbox {bbox} has a negative width or height")
                xyxy = (x, y, x + w, y + h)
                boxes.append(_check_box(xyxy, width, height, f"annotations[{i}].bbox {bbox} ->"))
                classes.append(index[name])
        except _BadImage as exc:
            _bad(src, where, key, str(exc), on_bad)
            continue
        except (KeyError, TypeError, ValueError) as exc:
            _bad(src, where, key, f"malformed entry ({exc!r})", on_bad)
            continue
        _add(src, key, file, boxes, classes, (width, height))
    return src


def _voc_text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise _BadImage(f"{where} has no <{tag}>")
    return child.text.strip()


def load_voc(folder: str | os.PathLike, class_names=None, on_bad="error") -> DetectionSource:
    """Read a Pascal VOC folder: ``Annotations/*.xml`` with images in ``JPEGImages/``.

    VOC pixel coordinates are 1-based and inclusive; ``xmin - 1`` and ``xmax``
    become the box's edges. Without ``class_names`` the classes are the sorted
    object names found.
    """
    folder = Path(folder)
    ann_dir = folder / "Annotations"
    if not ann_dir.is_dir():
        raise DataError(f"{folder} has no Annotations/ folder; is it a Pascal VOC folder?")
    files = sorted(ann_dir.glob("*.xml"))
    if not files:
        raise DataError(f"{ann_dir} has no .xml files.")
    parsed = []
    found = set()
    for file in files:
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError as exc:
            parsed.append((file, None, f"is not valid XML ({exc})"))
            continue
        parsed.append((file, root, None))
        found.update((o.findtext("name") or "").strip() for o in root.iter("object"))
    index = _class_index(sorted(found - {""}), class_names)
    src = DetectionSource(name=str(folder), class_names=list(index))
    for file, root, error in parsed:
        key = file.name
        try:
            if error:
                raise _BadImage(error)
            image_file = folder / "JPEGImages" / _voc_text(root, "filename", str(file))
            if not image_file.is_file():
                raise _BadImage(f"image file {image_file} is missing")
            size = root.find("size")
            if size is None:
                raise _BadImage("has no <size>")
            width = float(_voc_text(size, "width", "<size>"))
            height = float(_voc_text(size, "height", "<size>"))
            boxes, classes = [], []
            for j, obj in enumerate(root.iter("object")):
                name = _voc_text(obj, "name", f"object {j}")
                if name not in index:
                    raise _BadImage(f"object {j} has unknown class {name!r}")
                if (obj.findtext("difficult") or "0").strip() == "1":
                    src.ignored["difficult objects"] += 1
                    continue
                bb = obj.find("bndbox")
                if bb is None:
                    raise _BadImage(f"object {j} has no <bndbox>")
                vals = [
                    float(_voc_text(bb, t, f"object {j}")) for t in ("xmin", "ymin", "xmax", "ymax")
                ]
                xyxy = (vals[0] - 1.0, vals[1] - 1.0, vals[2], vals[3])
                boxes.append(_check_box(xyxy, width, height, f"object {j} ({name}) box {vals}"))
                classes.append(index[name])
        except _BadImage as exc:
            _bad(src, str(file), key, str(exc), on_bad)
            continue
        except ValueError as exc:
            _bad(src, str(file), key, f"malformed value ({exc})", on_bad)
            continue
        _add(src, key, image_file, boxes, classes, (width, height))
    return src


# --------------------------------------------------------------------------- synthetic
def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.integers(30, 110, size=3).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(3, 12)
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    gradient = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) * 30
    amp = rng.uniform(5, 22)
    noise = rng.normal(0, 10, size=(size, size, 3))
    image = base + (stripes * amp + gradient)[..., None] * rng.uniform(0.5, 1, 3) + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def _iou_xyxy(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def draw_shapes_detection_example(rng: np.random.Generator, size: int = 128, max_shapes: int = 4):
    """One textured image with 1..``max_shapes`` shapes and their boxes.

    Returns ``(image uint8 (size, size, 3), boxes [[x0, y0, x1, y1], ...] pixels,
    classes [...])``, classes indexing :data:`SHAPE_CLASSES`. A pixel ``i``
    covers ``[i, i + 1)``, so a shape drawn over pixels ``x0..x1`` has the box
    ``[x0, x1 + 1)``.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(_texture(rng, size))
    draw = ImageDraw.Draw(canvas)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _try in range(20):
            r = int(rng.integers(max(3, size // 16), max(4, size // 5)))
            cx, cy = (int(v) for v in rng.integers(r, size - r - 1, size=2))
            box = [cx - r, cy - r, cx + r + 1, cy + r + 1]
            if all(_iou_xyxy(box, b) < 0.05 for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(0, len(SHAPE_CLASSES)))
        color = tuple(int(c) for c in rng.integers(150, 256, size=3))
        x0, y0, x1, y1 = cx - r, cy - r, cx + r, cy + r
        if cls == 0:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        elif cls == 1:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        elif cls == 2:
            draw.polygon([(cx, y0), (x0, y1), (x1, y1)], fill=color)
        else:
            t = max(1, r // 3)
            draw.rectangle([cx - t, y0, cx + t, y1], fill=color)
            draw.rectangle([x0, cy - t, x1, cy + t], fill=color)
        boxes.append(box)
        classes.append(cls)
    return np.asarray(canvas), boxes, classes


def write_shapes_detection(
    out_dir: str | os.PathLike,
    num_images: int = 600,
    size: int = 128,
    seed: int = 0,
    max_shapes: int = 4,
) -> Path:
    """Write the shapes detection set as COCO: ``images/NNNN.png`` and ``annotations.json``.

    The same arguments always give the same files.

    Example:
        >>> write_shapes_detection("/tmp/shapes_det", num_images=8, size=64)
        PosixPath('/tmp/shapes_det')
    """
    from PIL import Image

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image, boxes, classes = draw_shapes_detection_example(rng, size, max_shapes)
        name = f"images/{i:04d}.png"
        Image.fromarray(image).save(out / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for box, cls in zip(boxes, classes, strict=True):
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(SHAPE_CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (out / "annotations.json").write_text(json.dumps(coco))
    params = {"num_images": num_images, "size": size, "seed": seed, "max_shapes": max_shapes}
    (out / "DONE.json").write_text(json.dumps(params, sort_keys=True))
    return out


def ensure_shapes_detection(out_dir: str | os.PathLike, **params) -> Path:
    """Generate the set into ``out_dir`` unless a complete one with the same parameters is there."""
    out = Path(out_dir)
    want = {"num_images": 600, "size": 128, "seed": 0, "max_shapes": 4, **params}
    done = out / "DONE.json"
    if done.is_file() and json.loads(done.read_text()) == want:
        return out
    return write_shapes_detection(out, **want)


# --------------------------------------------------------------------------- prepared data
@dataclass
class DetectionData:
    """A loaded detection source with its splits; builds a dataset per split."""

    data_config: object
    seed: int
    class_names: list[str]
    source: DetectionSource | None = None
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    streams: dict[str, tuple] = field(default_factory=dict)  # split -> (open_fn, size)
    task: str = "detection"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = self.data_config.image_size
        return (int(h), int(w), int(self.data_config.channels))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return list(self.source.skipped) if self.source else []

    @property
    def ignored(self) -> dict[str, int]:
        return dict(self.source.ignored) if self.source else {}

    def size(self, split: str) -> int:
        if self.source is not None:
            return len(self.indices.get(split, ()))
        return int(self.streams[split][1]) if split in self.streams else 0

    def split_table(self) -> list[tuple[str, str, int]]:
        """``(key, split, number of boxes)`` of every file example."""
        if self.source is None:
            return []
        return [
            (self.source.keys[i], s, len(self.source.classes[i]))
            for s in SPLITS
            for i in self.indices.get(s, ())
        ]

    def raw(self, split: str) -> tf.data.Dataset:
        """``(uint8 image, boxes [n, 4], classes [n])`` of a split, decoded, not resized."""
        channels = int(self.data_config.channels)
        if self.source is None:
            if split not in self.streams:
                raise DataError(f"The detection source has no {split} split.")
            return self.streams[split][0]()
        idx = self.indices.get(split, np.zeros(0, np.int64))
        src = self.source
        counts = np.array([len(src.classes[i]) for i in idx], np.int64)
        flat_boxes = np.concatenate([src.boxes[i] for i in idx] or [np.zeros((0, 4))], 0)
        flat_classes = np.concatenate([src.classes[i] for i in idx] or [np.zeros(0)], 0)
        boxes = tf.RaggedTensor.from_row_lengths(flat_boxes.astype(np.float32), counts)
        classes = tf.RaggedTensor.from_row_lengths(flat_classes.astype(np.int32), counts)
        paths = tf.constant([src.paths[i] for i in idx], tf.string, shape=[len(idx)])
        ds = tf.data.Dataset.from_tensor_slices((paths, boxes, classes))

        def read(path, b, c):
            image = T.decode_image(tf.io.read_file(path), channels, src.formats)
            return image, tf.reshape(tf.cast(b, tf.float32), [-1, 4]), tf.cast(c, tf.int32)

        return ds.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)

    def plan(self, split: str, training: bool | None = None, batch: bool = True) -> list[Step]:
        """The steps :meth:`dataset` runs for one split, described (for ``kerasflow data plan``)."""
        cfg, det = self.data_config, self.data_config.detection
        training = split == "train" if training is None else training
        size = tuple(int(v) for v in cfg.image_size)
        if self.source is not None:
            boxes = sum(len(self.source.classes[i]) for i in self.indices.get(split, ()))
            read = f"{self.size(split)} files of {self.source.name!r} ({boxes} boxes)"
            decode = f"decode_image to {cfg.channels} channel(s)"
        else:
            read = f"TFDS {cfg.source!r} split {cfg.split.source_names.get(split)!r}"
            decode = f"by TFDS; channels={cfg.channels}"
        mode = "pad" if cfg.resize == "pad" else "stretch"
        aa = ", antialias" if cfg.antialias else ""
        steps = [
            Step("read", read),
            Step("decode", decode),
            Step(
                "deterministic", f"letterbox {mode} to {size} ({cfg.interpolation}{aa}), boxes too"
            ),
        ]
        if not cfg.cache:
            steps.append(Step("cache", "off"))
        else:
            where = "in memory" if cfg.cache is True else f"file {cfg.cache}_{split}_det"
            steps.append(Step("cache", f"{where} (uint8 images)"))
        if training and cfg.shuffle_buffer:
            detail = f"buffer {cfg.shuffle_buffer}, seed {self.seed}, reshuffled every epoch"
            steps.append(Step("shuffle", detail))
        if training:
            ops = [] if det.crop_scale is None else [
                f"crop_scale {det.crop_scale} (box_policy {det.box_policy}, "
                f"min_visible {det.min_visible})"
            ]  # fmt: skip
            ops += [_describe_op(op, cfg.augment) for op in cfg.augment.enabled()]
            detail = (
                "; ".join(ops) + " (image and boxes, in 0..1 float, then float32 0..255)"
                if ops
                else "none"
            )
            steps.append(
                Step("augment", f"per-example seed {self.seed}, fresh every epoch: {detail}")
            )
        steps.append(
            Step(
                "normalize",
                f"in the model: its first layer maps 0..255 pixels by {cfg.normalize}; "
                f"boxes padded to {det.max_boxes} (class -1)",
            )
        )
        if batch:
            steps.append(Step("batch", f"batch_size {cfg.batch_size}"))
        steps.append(Step("prefetch", "AUTOTUNE"))
        return steps

    # The same text as classification and segmentation: it needs only size() and plan().
    plan_text = PreparedData.plan_text

    def dataset(
        self,
        split: str,
        training: bool | None = None,
        batch: bool = True,
        targets_fn=None,
        with_window: bool = False,
    ) -> tf.data.Dataset:
        """The split's pipeline.

        Args:
            training: random augmentation and shuffling (default: ``split == "train"``).
            batch: batch by ``data.batch_size``.
            targets_fn: ``(boxes [M, 4], classes [M]) -> target`` replacing the box dict.
            with_window: add the letterbox ``window`` to the box dict (serving checks).
        """
        cfg = self.data_config
        det = cfg.detection
        training = split == "train" if training is None else training
        size = tuple(int(v) for v in cfg.image_size)
        mode = "pad" if cfg.resize == "pad" else "stretch"

        def fit_size(image, boxes, classes):
            image, boxes, window = box_ops.letterbox(
                image, boxes, size, mode, interpolation=cfg.interpolation, antialias=cfg.antialias
            )
            return image, boxes, classes, window

        ds = self.raw(split).map(fit_size, num_parallel_calls=AUTOTUNE, deterministic=True)
        if cfg.cache:
            ds = ds.cache() if cfg.cache is True else ds.cache(f"{cfg.cache}_{split}_det")
        if training and cfg.shuffle_buffer:
            ds = ds.shuffle(cfg.shuffle_buffer, seed=self.seed, reshuffle_each_iteration=True)
        aug = cfg.augment
        ops = set(aug.enabled()) if training else set()

        def augment(element, seed):
            image, boxes, classes, window = element
            image = T.to_unit(image)
            seeds = T.split_seed(seed, 4)
            if det.crop_scale is not None:
                image, boxes, classes = box_ops.random_crop_scale(
                    image, boxes, classes, seeds[0], det.crop_scale, det.box_policy, det.min_visible
                )
            if "horizontal_flip" in ops:
                image, boxes = box_ops.random_flip(image, boxes, seeds[1], horizontal=True)
            if "vertical_flip" in ops:
                image, boxes = box_ops.random_flip(image, boxes, seeds[2], horizontal=False)
            image = box_ops.photometric(
                image, seeds[3], aug.brightness, aug.contrast, aug.saturation, aug.hue
            )
            return T.from_unit(image), boxes, classes, window

        def finish(image, boxes, classes, window):
            image.set_shape([size[0], size[1], int(cfg.channels)])
            boxes, classes = box_ops.pad_boxes(boxes, classes, det.max_boxes)
            if targets_fn is not None:
                return image, targets_fn(boxes, classes)
            target = {"boxes": boxes, "classes": classes}
            if with_window:
                target["window"] = window
            return image, target

        if training:
            seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip((ds, seeds.batch(2)))
            ds = ds.map(augment, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
        ds = ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
        if batch:
            ds = ds.batch(cfg.batch_size)
        return ds.prefetch(AUTOTUNE)


def _open_tfds(source: str, data_config):
    import tensorflow_datasets as tfds

    from kerasflow.pipelines.sources import parse_tfds_source

    name, version = parse_tfds_source(source)
    full = f"{name}:{version}" if version else name
    opts, det = data_config.tfds, data_config.detection
    try:
        builder = tfds.builder(full, data_dir=opts.data_dir)
    except Exception as exc:  # noqa: BLE001 - tfds raises several types for unknown names
        raise DataError(f"TFDS dataset {full!r} is not available: {exc}. Check the name.") from exc
    if opts.download:
        builder.download_and_prepare()
    features = builder.info.features
    objects = features[det.objects_key] if det.objects_key in features else None  # noqa: SIM401
    fields = getattr(objects, "feature", objects)  # a Sequence wraps a FeaturesDict
    if opts.image_key not in features or objects is None or det.bbox_key not in fields:
        raise DataError(
            f"TFDS dataset {full!r} has no {opts.image_key!r} image with "
            f"{det.objects_key!r}/{det.bbox_key!r} boxes (features: {sorted(features)}). "
            "Set data.tfds.image_key and data.detection.objects_key / bbox_key / label_key."
        )
    label = objects[det.label_key]
    names = list(getattr(label, "names", None) or data_config.class_names or [])
    if not names:
        raise DataError(f"TFDS dataset {full!r} has no label names; set data.class_names.")
    return builder, full, names


def load_tfds_detection(source: str, data_config, seed: int) -> DetectionData:
    """A TFDS detection dataset; each kerasflow split reads the TFDS split named for it."""
    builder, full, names = _open_tfds(source, data_config)
    opts, det = data_config.tfds, data_config.detection
    channels = int(data_config.channels)
    available = list(builder.info.splits.keys()) if builder.info.splits else []
    streams = {}
    for split, part in data_config.split.source_names.items():
        if available and part.split("[")[0] not in available:
            if split == "train":
                raise DataError(
                    f"TFDS dataset {full!r} has no split {part!r} (splits: {available}). "
                    "Set data.split.source_names.train."
                )
            continue

        def open_split(part=part):
            ds = builder.as_dataset(split=part, shuffle_files=False)

            def convert(ex):
                image = T.to_channels(ex[opts.image_key], channels)
                obj = ex[det.objects_key]
                boxes = tf.clip_by_value(
                    tf.reshape(tf.cast(obj[det.bbox_key], tf.float32), [-1, 4]), 0, 1
                )
                labels = tf.cast(tf.reshape(obj[det.label_key], [-1]), tf.int32)
                # Both are per-object sequences; a malformed record must not shift ids.
                n = tf.minimum(tf.shape(boxes)[0], tf.shape(labels)[0])
                return image, boxes[:n], labels[:n]

            return ds.map(convert, num_parallel_calls=AUTOTUNE, deterministic=True)

        count = int(open_split().cardinality().numpy())
        if count < 0:
            count = sum(1 for _ in open_split())
        streams[split] = (open_split, count)
    return DetectionData(data_config, seed, names, streams=streams)


def load_detection_source(data_config) -> DetectionSource:
    """The file source named by ``data.source`` (COCO JSON, VOC folder or synthetic)."""
    source = data_config.source
    names = data_config.class_names
    on_bad = data_config.on_bad_image
    if source.startswith("synthetic:"):
        from kerasflow.pipelines.sources import synthetic_dir

        kind = source.split(":", 1)[1]
        if kind != "shapes_detection":
            raise DataError(
                f"Unknown synthetic detection source {source!r}. Use synthetic:shapes_detection."
            )
        size = int(max(data_config.image_size))
        folder = ensure_shapes_detection(
            synthetic_dir(kind, data_config),
            num_images=data_config.detection.synthetic_images,
            size=size,
        )
        src = load_coco(folder / "annotations.json", folder, names, on_bad)
        src.name = source
    elif source.lower().endswith(".json"):
        src = load_coco(source, data_config.root, names, on_bad)
    elif Path(source).is_dir():
        src = load_voc(source, names, on_bad)
    else:
        raise DataError(
            f"data.source {source!r} is not a detection source: use a COCO .json file, a "
            "Pascal VOC folder (Annotations/, JPEGImages/), tfds:<name> or "
            "synthetic:shapes_detection."
        )
    _screen_images(src, data_config)
    if src.skipped:
        log.warning("skipped %d images with bad annotations in %s", len(src.skipped), source)
    if len(src) == 0:
        raise DataError(
            f"data.source {source!r} has no usable images ({len(src.skipped)} skipped). Add data."
        )
    max_boxes = data_config.detection.max_boxes
    most = max(len(c) for c in src.classes)
    if most > max_boxes:
        log.warning(
            "an image in %s has %d boxes but data.detection.max_boxes is %d; extra boxes are dropped",
            source, most, max_boxes,
        )  # fmt: skip
    return src


def _screen_images(src: DetectionSource, data_config) -> None:
    """Scan every image file like the other file sources do (``on_bad_image``), and
    check that each image has the size its annotation gives (boxes are fractions of it)."""
    from kerasflow.pipelines import scan as scan_lib
    from kerasflow.pipelines.sources import screen_files

    keep, skipped, src.formats = screen_files([Path(p) for p in src.paths], data_config)
    src.skipped.extend(skipped)
    for i in np.flatnonzero(keep):
        actual, said = scan_lib.image_size(src.paths[i]), src.sizes[i]
        if tuple(actual) != said:
            why = (
                f"the image {src.paths[i]} is {actual[0]}x{actual[1]} but its annotation "
                f"says {said[0]}x{said[1]}, so its boxes would be scaled wrong"
            )
            _bad(
                src,
                f"{src.name}: image {src.keys[i]!r}",
                src.keys[i],
                why,
                data_config.on_bad_image,
            )
            keep[i] = False
    for name in ("keys", "paths", "boxes", "classes", "sizes"):
        values = getattr(src, name)
        setattr(src, name, [v for v, k in zip(values, keep, strict=True) if k])


BOX_AWARE_OPS = ("horizontal_flip", "vertical_flip", "brightness", "contrast", "saturation", "hue")


def check_detection_options(data_config) -> None:
    """Reject ``data`` options that would move pixels without their boxes."""
    other = [op for op in data_config.augment.enabled() if op not in BOX_AWARE_OPS]
    if other:
        raise DataError(
            f"data.augment {', '.join(other)} cannot move boxes; detection supports "
            f"{', '.join(BOX_AWARE_OPS)} and data.detection.crop_scale (random crop and zoom). "
            f"Remove {', '.join(other)}."
        )
    if data_config.center_crop:
        raise DataError(
            f"data.center_crop ({data_config.center_crop}) would cut boxes; detection does not "
            "support it. Remove data.center_crop."
        )
    if data_config.resize == "crop":
        raise DataError(
            "data.resize: crop would cut boxes; detection supports pad and stretch. "
            "Set data.resize: pad."
        )


def prepare_detection(data_config, seed: int = 0) -> DetectionData:
    """Load a detection source once and assign its splits.

    Example:
        >>> data = prepare_detection(cfg.data, seed=0)
        >>> images, targets = next(iter(data.dataset("train")))
        >>> targets["boxes"].shape  # (batch, max_boxes, 4)
    """
    check_detection_options(data_config)
    return load_detection(data_config, seed)


def load_detection(data_config, seed: int = 0) -> DetectionData:
    """:func:`prepare_detection` without checking the augment options (``data check`` uses it)."""
    if data_config.source.lower().startswith("tfds:"):
        return load_tfds_detection(data_config.source, data_config, seed)
    src = load_detection_source(data_config)
    labels = np.zeros(len(src), np.int64)
    indices = assign_splits(src.keys, labels, data_config.split, seed=seed)
    return DetectionData(data_config, seed, list(src.class_names), source=src, indices=indices)
