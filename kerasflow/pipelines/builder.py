"""The plan builder: puts the tf.data steps in the right order for each split.

read -> decode -> deterministic ops -> cache -> shuffle -> random augment
-> batch -> batch ops -> prefetch, every map with ``num_parallel_calls=AUTOTUNE``
and ``deterministic=data.deterministic``. Validation and test never get random
augmentation. The user declares *which* ops to use; this module decides
*where* they go.

Two choices keep the pipeline fast: consecutive per-element steps are fused
into one parallel ``map`` (the plan marks them), and images stay uint8 from
the decoder to the model (float32 0..255 only after float augmentations): the
cache, the shuffle buffer and flip/crop-only batches are 4x smaller than
float32, and ``data.normalize`` is the model's first layer
(:func:`kerasflow.pipelines.transforms.input_scaling`), so it runs with the
model's step instead of competing with it for the CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import splits as splits_lib
from kerasflow.pipelines import transforms as T
from kerasflow.pipelines.sources import SourceData, load_source

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE

GEOMETRIC = {"horizontal_flip", "vertical_flip", "rotation", "zoom", "translation"}
BATCH_OPS = {"mixup", "cutmix"}
# Ops that work on uint8 pixels exactly; the others need 0..1 floats.
DTYPE_FREE = {"horizontal_flip", "vertical_flip"}


@dataclass
class Step:
    """One step of a pipeline plan.

    Attributes:
        stage: read, decode, deterministic, cache, shuffle, augment, batch,
            batch_ops or prefetch.
        detail: what the step does, for ``kerasflow data plan``.
        element_fn: a function of one element tuple returning a tuple;
            consecutive ones are fused into one parallel ``map``.
        dataset_fn: a function ``Dataset -> Dataset`` (for non-map steps).
    """

    stage: str
    detail: str
    element_fn: Callable | None = None
    dataset_fn: Callable | None = None
    fused: bool = field(default=False, repr=False)
    internal: bool = field(default=False, repr=False)  # plumbing, not shown in the plan


def _compose(fns):
    def run(*element):
        for fn in fns:
            element = fn(element)
        return element

    return run


def run_plan(steps: list[Step], deterministic: bool) -> tf.data.Dataset:
    """Build the dataset that a plan describes."""
    ds, pending = None, []

    def flush(ds):
        if pending:
            ds = ds.map(
                _compose(list(pending)), num_parallel_calls=AUTOTUNE, deterministic=deterministic
            )
            pending.clear()
        return ds

    for step in steps:
        if step.element_fn is not None:
            pending.append(step.element_fn)
        elif step.dataset_fn is not None:
            ds = step.dataset_fn(flush(ds))
    return flush(ds)


def _mark_fused(steps: list[Step]) -> list[Step]:
    run: list[Step] = []
    for step in [*steps, Step("end", "")]:
        if step.element_fn is not None:
            run.append(step)
            continue
        if step.dataset_fn is None and step.stage != "end":
            continue  # a no-op step (e.g. cache off) does not break a fused map
        if sum(not s.internal for s in run) > 1:
            for s in run:
                s.fused = True
        run = []
    return steps


def format_plan(steps: list[Step]) -> str:
    """Numbered lines, one per step; fused map steps are marked ``[one map]``."""
    lines = []
    for i, step in enumerate((s for s in steps if not s.internal), start=1):
        tag = "  [one map]" if step.fused else ""
        lines.append(f"{i:2d}. {step.stage:<13} {step.detail}{tag}")
    return "\n".join(lines)


@dataclass
class PreparedData:
    """A loaded source with its split assignment; builds datasets per split.

    Elements are ``(image, target)``: images uint8 ``(H, W, C)`` pixels (float32
    0..255 in training after rotation, zoom, translation, photometric ops or
    MixUp/CutMix), which the model scales by
    ``data.normalize`` in its first layer; targets int64 class ids (classification), one-hot
    float32 ``(K,)`` in every split when MixUp/CutMix is on (see
    :attr:`one_hot_targets`), or ``(H, W)`` int32 class-id masks
    (segmentation).
    """

    data_config: object
    source: SourceData
    indices: dict[str, np.ndarray]
    seed: int = 0

    # ------------------------------------------------------------------ facts
    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return len(self.source.class_names)

    @property
    def task(self) -> str:
        """``classification`` or ``segmentation``."""
        return self.source.task

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = self.data_config.image_size
        return (h, w, self.data_config.channels)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Files left out under ``on_bad_image: skip``: ``(path, reason)``, full paths."""
        return list(self.source.skipped)

    @property
    def ignored(self) -> dict[str, int]:
        """Counts of files ignored for their extension, by extension."""
        return dict(self.source.ignored)

    @property
    def one_hot_targets(self) -> bool:
        """True when every split's targets are one-hot float32 ``(K,)``: MixUp or CutMix is on.

        Mixed training targets are soft, so all splits use one-hot targets to
        keep one loss and one accuracy metric valid for train and validation.
        :meth:`labels` still gives integer class ids.
        """
        enabled = set(self.data_config.augment.enabled())
        return self.task == "classification" and bool(enabled & BATCH_OPS)

    @property
    def one_hot_training(self) -> bool:
        """Alias of :attr:`one_hot_targets`."""
        return self.one_hot_targets

    def size(self, split: str) -> int:
        return int(len(self._indices(split)))

    def split_table(self) -> list[tuple[str, str, int]]:
        """(key, split, label) rows: the assignment logged with each run."""
        rows = []
        for split, idx in self.indices.items():
            rows.extend((self.source.keys[i], split, int(self.source.labels[i])) for i in idx)
        return sorted(rows)

    def labels(self, split: str) -> np.ndarray:
        """Targets of a split in dataset order (``training=False``).

        Classification: int64 class ids ``(n,)``. Segmentation: the resized
        int32 masks ``(n, H, W)``.
        """
        idx = self._indices(split)
        if self.task == "classification":
            return self.source.labels[idx]
        masks = [m for _, m in self.dataset(split, training=False, batch=False).as_numpy_iterator()]
        h, w = self.data_config.image_size
        return np.stack(masks) if masks else np.zeros((0, h, w), np.int32)

    def _indices(self, split: str) -> np.ndarray:
        if split not in self.indices:
            raise DataError(f"Unknown split {split!r}. Choose one of: {', '.join(self.indices)}.")
        return self.indices[split]

    # ------------------------------------------------------------------ plan
    def plan(self, split: str, training: bool | None = None, batch: bool = True) -> list[Step]:
        """The ordered steps that :meth:`dataset` runs for one split."""
        cfg = self.data_config
        training = (split == "train") if training is None else training
        idx = self._indices(split)
        if len(idx) == 0:
            raise DataError(
                f"Split {split!r} of data.source {cfg.source!r} is empty. "
                "Adjust data.split fractions or add data."
            )
        seg = self.task == "segmentation"
        enabled = cfg.augment.enabled() if training else []
        rrc = cfg.augment.random_resized_crop if "random_resized_crop" in enabled else None
        element_ops = [o for o in enabled if o not in BATCH_OPS and o != "random_resized_crop"]
        batch_ops = [o for o in enabled if o in BATCH_OPS] if not seg else []
        steps: list[Step] = self._read_steps(idx, decode=rrc is None or self.source.kind != "files")
        if rrc is None:
            steps.append(
                Step(
                    "deterministic",
                    f"channels={cfg.channels}"
                    + (f", center_crop {cfg.center_crop}" if cfg.center_crop else "")
                    + f", resize {cfg.resize} to {tuple(cfg.image_size)} ({cfg.interpolation}"
                    + (", antialias" if cfg.antialias else "")
                    + "), uint8"
                    + ("; mask nearest" if seg else ""),
                    element_fn=_deterministic_fn(cfg, seg),
                )
            )
        else:
            steps.append(
                Step(
                    "deterministic",
                    "none before the cache: random_resized_crop replaces the resize "
                    "(after shuffle)",
                )
            )
        if cfg.on_bad_image == "skip" and self.source.kind != "arrays":
            # The scan in prepare() catches bad files up front; this drops any that
            # only fail in the full decode (logged by tf.data) instead of stopping.
            steps.append(
                Step(
                    "decode",
                    "drop examples that fail to decode (on_bad_image: skip)",
                    dataset_fn=lambda ds: ds.ignore_errors(log_warning=True),
                )
            )
        steps.append(self._cache_step(split, training, rrc is not None))
        if training and cfg.shuffle_buffer:
            buf = min(cfg.shuffle_buffer, len(idx))
            shuffle = Step(
                "shuffle",
                f"buffer {buf}, seed {self.seed}, reshuffled every epoch",
                dataset_fn=lambda ds: ds.shuffle(
                    buf, seed=self.seed, reshuffle_each_iteration=True
                ),
            )
            if cfg.cache or self.source.kind == "stream":
                steps.append(shuffle)
            else:
                # Without a cache, shuffling the small (path, label) pairs before reading
                # gives the same order at a fraction of the memory and start-up time.
                shuffle.detail += " (no cache: shuffled before reading)"
                steps.insert(1, shuffle)
        if rrc is not None or element_ops:
            aug_steps = self._augment_steps(rrc, element_ops, seg)
            seeding, aug_steps = aug_steps[:2], aug_steps[2:]
            if cfg.cache or self.source.kind == "stream":
                steps += seeding
            else:
                # No cache: attach the seeds right after the (shuffled) list, so read,
                # decode, resize and augment fuse into one parallel map.
                first_map = next(i for i, st in enumerate(steps) if st.element_fn is not None)
                steps[first_map:first_map] = seeding
            steps += aug_steps
        # The pipeline hands over uint8 pixels; the model's first layer applies
        # data.normalize. Scaling in the pipeline cost ~35% of the cached training
        # pipeline's CPU and made every batch 4x bigger (benchmarks/pipeline_throughput.py).
        steps.append(
            Step(
                "normalize",
                f"in the model: its first layer maps 0..255 pixels by {cfg.normalize}"
                + (
                    f"; one-hot targets ({self.num_classes} classes)"
                    if self.one_hot_targets
                    else ""
                ),
                element_fn=self._one_hot_fn() if self.one_hot_targets else None,
            )
        )
        if not batch:
            return _mark_fused(steps)
        bs = cfg.batch_size
        steps.append(Step("batch", f"batch_size {bs}", dataset_fn=lambda ds: ds.batch(bs)))
        steps += self._batch_op_steps(batch_ops, seg)
        steps.append(Step("prefetch", "AUTOTUNE", dataset_fn=lambda ds: ds.prefetch(AUTOTUNE)))
        return _mark_fused(steps)

    def _read_steps(self, idx: np.ndarray, decode: bool) -> list[Step]:
        src, cfg = self.source, self.data_config
        seg = src.task == "segmentation"
        channels = cfg.channels
        fmts = src.formats  # from the file scan: picks the decoder up front
        n = len(idx)
        if src.kind == "arrays":
            images = src.images[idx]
            targets = src.masks[idx] if seg else src.labels[idx]
            return [
                Step(
                    "read",
                    f"{n} in-memory arrays from {src.name!r}",
                    dataset_fn=lambda _: tf.data.Dataset.from_tensor_slices((images, targets)),
                ),
                Step("decode", "none: arrays are decoded already"),
            ]
        if src.kind == "files":
            paths = np.array(src.paths)[idx]
            targets = np.array(src.mask_paths)[idx] if seg else src.labels[idx]
            steps = [
                Step(
                    "read",
                    f"{n} files of {src.name!r}" + (" with PNG masks" if seg else ""),
                    dataset_fn=lambda _: tf.data.Dataset.from_tensor_slices((paths, targets)),
                ),
                Step(
                    "read",
                    "tf.io.read_file",
                    element_fn=_pair(
                        (lambda x, t: (tf.io.read_file(x), tf.io.read_file(t)))
                        if seg
                        else (lambda x, t: (tf.io.read_file(x), t))
                    ),
                ),
            ]
            if decode:
                steps.append(
                    Step(
                        "decode",
                        f"decode {'/'.join(sorted(fmts)) if fmts else 'image'} to {channels} "
                        "channel(s)" + (", mask PNG" if seg else ""),
                        element_fn=_pair(
                            (lambda x, t: (T.decode_image(x, channels, fmts), T.decode_mask(t)))
                            if seg
                            else (lambda x, t: (T.decode_image(x, channels, fmts), t))
                        ),
                    )
                )
            else:
                steps.append(Step("decode", "deferred: decoded with the random crop"))
            return steps
        # stream: read each part in its fixed order, keep this split's positions
        parts = [src.parts[i] for i in idx]
        plan = []
        for part in dict.fromkeys(parts):
            in_part = [i for i, p in enumerate(src.parts) if p == part]
            keep = np.zeros(len(in_part), bool)
            keep[src.positions[[i for i in idx if src.parts[i] == part]]] = True
            plan.append((part, keep))

        def read(_):
            out = None
            for part, keep in plan:
                mask = tf.constant(keep)
                ds = src.reader(part).enumerate()
                ds = ds.filter(lambda i, _r, m=mask: tf.gather(m, i)).map(lambda _i, r: r)
                out = ds if out is None else out.concatenate(ds)
            return out

        where = ", ".join(f"{p or 'records'}: {int(k.sum())}" for p, k in plan)
        return [
            Step("read", f"{src.name!r} in order, {n} examples ({where})", dataset_fn=read),
            Step(
                "decode",
                f"decode to {channels} channel(s)",
                element_fn=lambda e: tuple(src.decoder(e[0] if len(e) == 1 else e)),
            ),
        ]

    def _cache_key(self, split: str, training: bool, raw: bool) -> str:
        cfg = self.data_config
        blob = json.dumps(
            {
                "data": cfg.model_dump(mode="json", exclude={"augment", "batch_size", "cache"}),
                "split": split,
                "raw": raw,
                "keys": hashlib.sha256(
                    "\n".join(self.source.keys[i] for i in self.indices[split]).encode()
                ).hexdigest(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def _cache_step(self, split: str, training: bool, raw: bool) -> Step:
        cfg = self.data_config
        what = "encoded bytes" if raw and self.source.kind == "files" else "uint8 images"
        if not cfg.cache:
            return Step("cache", "off")
        if cfg.cache is True:
            return Step("cache", f"in memory ({what})", dataset_fn=lambda ds: ds.cache())
        path = f"{cfg.cache}.{split}.{self._cache_key(split, training, raw)}"
        return Step("cache", f"file {path} ({what})", dataset_fn=lambda ds: ds.cache(path))

    def _augment_steps(self, rrc, ops: list[str], seg: bool) -> list[Step]:
        cfg, aug = self.data_config, self.data_config.augment
        size = tuple(cfg.image_size)
        seed = self.seed
        files = self.source.kind == "files"
        steps = [
            Step(
                "augment",
                f"attach a per-example seed (tf.data random, seed {seed}, fresh every epoch)",
                dataset_fn=lambda ds: tf.data.Dataset.zip(
                    (
                        ds,
                        tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2),
                    )
                ),
            ),
            Step(
                "augment",
                "(flatten)",
                element_fn=lambda e: (e[0][0], e[0][1], e[1]),
                internal=True,
            ),
        ]
        if rrc is not None:
            scale, ratio = tuple(rrc.scale), tuple(rrc.ratio)

            def crop(e):
                image, target, s = e
                s = T.split_seed(s, 2)[1]
                if files and not seg:
                    image = T.decode_random_crop(
                        image, cfg.channels, s, size, scale, ratio, self.source.formats
                    )
                    return image, target, e[2]
                if files:
                    image = T.decode_image(image, cfg.channels, self.source.formats)
                    target = T.decode_mask(target)
                image = T.to_channels(image, cfg.channels)
                image, mask = T.random_resized_crop(
                    image, target if seg else None, s, size, scale, ratio
                )
                return image, (mask if seg else target), e[2]

            how = "decode_and_crop_jpeg (JPEG), " if files and not seg else ""
            steps.append(
                Step(
                    "augment",
                    f"random_resized_crop scale={scale} ratio=({ratio[0]:.3g}, {ratio[1]:.3g}): "
                    f"{how}resize to {size}",
                    element_fn=crop,
                )
            )
        if seg and "randaugment" in ops:
            raise DataError(
                "data.augment.randaugment is for classification; for segmentation list the "
                "geometric and photometric ops explicitly (they move the mask with the image)."
            )
        needs_float = any(o not in DTYPE_FREE for o in ops)
        funcs = []
        descr = []
        for k, op in enumerate(ops):
            funcs.append((op, k))
            descr.append(_describe_op(op, aug))

        def augment(e):
            image, target, s = e
            seeds = T.split_seed(s, len(funcs) + 3)
            mask = target if seg else None
            if needs_float:
                image = T.to_unit(image)
            for op, k in funcs:
                image, mask = _apply_op(op, aug, image, mask, seeds[k + 3])
            if needs_float:
                image = T.from_unit(image)
            return image, (mask if seg else target)

        if funcs:
            target = "image and mask" if seg else "image"
            kind = "in 0..1 float, then float32 0..255" if needs_float else "uint8"
            steps.append(
                Step("augment", f"{'; '.join(descr)} ({target}, {kind})", element_fn=augment)
            )
        else:
            steps.append(
                Step("augment", "(drop seed)", element_fn=lambda e: (e[0], e[1]), internal=True)
            )
        return steps

    def _one_hot_fn(self):
        k = self.num_classes
        return lambda e: (e[0], tf.one_hot(e[1], k, dtype=tf.float32))

    def _batch_op_steps(self, ops: list[str], seg: bool) -> list[Step]:
        """MixUp/CutMix on float32 0..255 batches with one-hot targets.

        Both are convex combinations, so mixing pixels and then scaling them in
        the model equals mixing scaled images.
        """
        if not ops:
            return []
        aug = self.data_config.augment
        seed = self.seed + 1
        steps = [
            Step(
                "batch_ops",
                f"attach a per-batch seed (seed {seed}, fresh every epoch)",
                dataset_fn=lambda ds: tf.data.Dataset.zip(
                    (
                        ds,
                        tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2),
                    )
                ),
            )
        ]
        mix, cut = aug.mixup, aug.cutmix

        def mixing(e):
            (images, targets), s = e
            images = tf.cast(images, tf.float32)
            s = T.split_seed(s, 3)
            if mix and cut:
                return tf.cond(
                    T._uniform(s[2]) < 0.5,
                    lambda: T.mixup(images, targets, s[0], mix),
                    lambda: T.cutmix(images, targets, s[1], cut),
                )
            if mix:
                return T.mixup(images, targets, s[0], mix)
            return T.cutmix(images, targets, s[1], cut)

        names = " or ".join(f"{o} alpha={getattr(aug, o)}" for o in ops) + (
            " (one per batch, 50/50)" if len(ops) == 2 else ""
        )
        steps.append(Step("batch_ops", names, element_fn=mixing))
        return steps

    def plan_text(self, splits=("train", "validation", "test")) -> str:
        """The plan of every split as text (what ``kerasflow data plan`` prints)."""
        blocks = []
        for split in splits:
            if self.size(split) == 0:
                blocks.append(f"{split} (0 examples): empty")
                continue
            head = f"{split} ({self.size(split)} examples)"
            blocks.append(head + "\n" + format_plan(self.plan(split)))
        return "\n\n".join(blocks)

    # ------------------------------------------------------------------ datasets
    def dataset(
        self, split: str, training: bool | None = None, batch: bool = True
    ) -> tf.data.Dataset:
        """The ``tf.data.Dataset`` of ``(image, target)`` for one split.

        Args:
            split: ``train``, ``validation`` or ``test``.
            training: shuffle and augment; defaults to ``split == "train"``.
            batch: batch, apply batch-level ops and prefetch (False gives single
                uint8 examples, without MixUp/CutMix).
        """
        steps = self.plan(split, training=training, batch=batch)
        return run_plan(steps, self.data_config.deterministic)


def _pair(fn):
    """An element function applying ``fn(image, target)``, passing any seed through."""
    return lambda e: tuple(fn(e[0], e[1])) + tuple(e[2:])


def _deterministic_fn(cfg, seg: bool):
    if seg:
        return _pair(lambda x, t: T.deterministic(x, cfg, t))
    return _pair(lambda x, t: (T.deterministic(x, cfg), t))


def _describe_op(op: str, aug) -> str:
    value = getattr(aug, op)
    if op in ("horizontal_flip", "vertical_flip"):
        return op
    if op == "randaugment":
        return f"randaugment num_ops={value.num_ops} magnitude={value.magnitude}"
    return f"{op} {value}"


def _apply_op(op: str, aug, image, mask, seed):
    """One random op; geometric ones move the mask (nearest) too."""
    if op == "horizontal_flip":
        return T.flip(image, mask, seed, horizontal=True)
    if op == "vertical_flip":
        return T.flip(image, mask, seed, horizontal=False)
    if op == "rotation":
        return T.random_rotation(image, mask, seed, aug.rotation)
    if op == "zoom":
        return T.random_zoom(image, mask, seed, aug.zoom)
    if op == "translation":
        return T.random_translation(image, mask, seed, aug.translation)
    if op == "brightness":
        return T.random_brightness(image, seed, aug.brightness), mask
    if op == "contrast":
        return T.random_contrast(image, seed, aug.contrast), mask
    if op == "saturation":
        return T.random_saturation(image, seed, aug.saturation), mask
    if op == "hue":
        return T.random_hue(image, seed, aug.hue), mask
    if op == "random_erasing":
        return T.random_erasing(image, seed, aug.random_erasing), mask
    if op == "randaugment":
        r = aug.randaugment
        return T.randaugment(image, seed, r.num_ops, r.magnitude), mask
    raise ValueError(f"Unknown augment op. Received: op={op!r}")


def prepare(data_config, seed: int = 0, source: SourceData | None = None) -> PreparedData:
    """Load the source once (scanning its files) and assign splits.

    Args:
        data_config: the ``data:`` section (:class:`kerasflow.config.DataConfig`).
        seed: decides split hashing, shuffling and augmentation.
        source: an already loaded source (e.g. :func:`~kerasflow.pipelines.from_arrays`)
            instead of ``data.source``.

    Raises:
        DataError: a bad file (with ``on_bad_image: error``), label, mask or folder,
            naming it.

    Example:
        >>> data = prepare(kerasflow.load_config().data, seed=42)
        >>> data.size("train"), data.num_classes
    """
    source = load_source(data_config) if source is None else source
    enabled = set(data_config.augment.enabled())
    if source.task == "segmentation" and enabled & (BATCH_OPS | {"randaugment"}):
        raise DataError(
            f"data.augment {sorted(enabled & (BATCH_OPS | {'randaugment'}))} are for "
            "classification. Remove them for segmentation sources."
        )
    indices = splits_lib.assign(source, data_config.split, seed=seed)
    log.info("data %s: %s", data_config.source, {k: int(len(v)) for k, v in indices.items()})
    if source.skipped:
        log.warning(
            "data %s: skipped %d bad files or records", data_config.source, len(source.skipped)
        )
    return PreparedData(data_config=data_config, source=source, indices=indices, seed=seed)


def build(
    data_config, split: str = "train", seed: int = 0, training: bool | None = None
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(image, target)`` for one split.

    Example:
        >>> import kerasflow
        >>> cfg = kerasflow.load_config()
        >>> ds = kerasflow.pipelines.build(cfg.data, "train")
    """
    return prepare(data_config, seed).dataset(split, training=training)
