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

The steps themselves live in :mod:`~kerasflow.pipelines.plan` (running and
printing a plan) and :mod:`~kerasflow.pipelines.augment` (the random ops);
this module holds :class:`PreparedData`, :func:`prepare` and :func:`build`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import splits as splits_lib
from kerasflow.pipelines import transforms as T
from kerasflow.pipelines.augment import BATCH_OPS, augment_steps, batch_op_steps, seed_steps
from kerasflow.pipelines.plan import AUTOTUNE, Step, format_plan, mark_fused, run_plan
from kerasflow.pipelines.sources import SourceData, load_source
from kerasflow.pipelines.sources.source_data import LABEL_SEPARATOR, check_target

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """A loaded source with its split assignment; builds datasets per split.

    Elements are ``(image, target)``: images uint8 ``(H, W, C)`` pixels (float32
    0..255 in training after rotation, zoom, translation, photometric ops or
    MixUp/CutMix), which the model scales by ``data.normalize`` in its first
    layer. Targets depend on :attr:`target`:

    * ``class``: int64 class ids, or one-hot float32 ``(K,)`` in every split
      when MixUp/CutMix is on (see :attr:`one_hot_targets`);
    * ``multi_hot``: float32 ``(K,)`` 0/1 label vectors (mixed, not rounded,
      by MixUp/CutMix in training);
    * ``mask``: ``(H, W)`` int32 class-id masks.
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
        """K: classes (``class``, ``mask``) or labels (``multi_hot``)."""
        return len(self.source.class_names)

    @property
    def target(self) -> str:
        """The target kind: ``class``, ``mask`` or ``multi_hot``."""
        return self.source.target

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
        """True when class targets are one-hot float32 ``(K,)`` in every split: MixUp or CutMix is on.

        Mixed training targets are soft, so all splits use one-hot targets to
        keep one loss and one accuracy metric valid for train and validation.
        :meth:`labels` still gives integer class ids. Always False for
        ``multi_hot`` targets (float vectors already) and masks.
        """
        enabled = set(self.data_config.augment.enabled())
        return self.target == "class" and bool(enabled & BATCH_OPS)

    @property
    def one_hot_training(self) -> bool:
        """Alias of :attr:`one_hot_targets`."""
        return self.one_hot_targets

    def size(self, split: str) -> int:
        return int(len(self._indices(split)))

    def split_table(self) -> list[tuple[str, str, int | str]]:
        """(key, split, label) rows: the assignment logged with each run.

        The label is the class id (``class``), 0 (``mask``), or the example's
        label names joined by ``|`` (``multi_hot``; empty for no label).
        """
        rows = []
        labels, names = self.source.labels, self.class_names
        for split, idx in self.indices.items():
            if self.target == "multi_hot":
                rows.extend(
                    (
                        self.source.keys[i],
                        split,
                        LABEL_SEPARATOR.join(names[k] for k in np.flatnonzero(labels[i])),
                    )
                    for i in idx
                )
            else:
                rows.extend((self.source.keys[i], split, int(labels[i])) for i in idx)
        return sorted(rows)

    def labels(self, split: str) -> np.ndarray:
        """Targets of a split in dataset order (``training=False``).

        ``class``: int64 class ids ``(n,)``. ``multi_hot``: float32 0/1
        ``(n, K)``. ``mask``: the resized int32 masks ``(n, H, W)``.
        """
        idx = self._indices(split)
        if self.target == "class":
            return self.source.labels[idx]
        if self.target == "multi_hot":
            return self.source.labels[idx].astype(np.float32)
        masks = [m for _, m in self.dataset(split, training=False, batch=False).as_numpy_iterator()]
        h, w = self.data_config.image_size
        return np.stack(masks) if masks else np.zeros((0, h, w), np.int32)

    def _indices(self, split: str) -> np.ndarray:
        if split not in self.indices:
            raise DataError(f"Unknown split {split!r}. Choose one of: {', '.join(self.indices)}.")
        return self.indices[split]

    def _targets(self, idx: np.ndarray) -> np.ndarray:
        """In-memory targets of ``idx`` as the pipeline carries them (not for mask files)."""
        if self.target == "mask":
            return self.source.masks[idx]
        if self.target == "multi_hot":
            return self.source.labels[idx].astype(np.float32)
        return self.source.labels[idx]

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
        has_mask = self.target == "mask"
        kind = self.source.kind
        enabled = cfg.augment.enabled() if training else []
        rrc = cfg.augment.random_resized_crop if "random_resized_crop" in enabled else None
        element_ops = [o for o in enabled if o not in BATCH_OPS and o != "random_resized_crop"]
        batch_ops = [o for o in enabled if o in BATCH_OPS] if not has_mask else []
        steps: list[Step] = self._read_steps(idx, decode=rrc is None or kind != "files")
        if rrc is None:
            steps.append(
                Step(
                    "deterministic",
                    f"channels={cfg.channels}"
                    + (f", center_crop {cfg.center_crop}" if cfg.center_crop else "")
                    + f", resize {cfg.resize} to {tuple(cfg.image_size)} ({cfg.interpolation}"
                    + (", antialias" if cfg.antialias else "")
                    + "), uint8"
                    + ("; mask nearest" if has_mask else ""),
                    element_fn=_deterministic_fn(cfg, has_mask),
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
        if cfg.on_bad_image == "skip" and kind != "arrays":
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
        if training and cfg.sampling == "balanced":
            steps.append(self._balance_step())
        if training and cfg.shuffle_buffer:
            buf = min(cfg.shuffle_buffer, len(idx))
            shuffle = Step(
                "shuffle",
                f"buffer {buf}, seed {self.seed}, reshuffled every epoch",
                dataset_fn=lambda ds: ds.shuffle(
                    buf, seed=self.seed, reshuffle_each_iteration=True
                ),
            )
            if cfg.cache or kind == "stream":
                steps.append(shuffle)
            else:
                # Without a cache, shuffling the small (path, label) pairs before reading
                # gives the same order at a fraction of the memory and start-up time.
                shuffle.detail += " (no cache: shuffled before reading)"
                steps.insert(1, shuffle)
        if rrc is not None or element_ops:
            seeding = seed_steps(self.seed)
            if cfg.cache or kind == "stream":
                steps += seeding
            else:
                # No cache: attach the seeds right after the (shuffled) list, so read,
                # decode, resize and augment fuse into one parallel map.
                first_map = next(i for i, st in enumerate(steps) if st.element_fn is not None)
                steps[first_map:first_map] = seeding
            steps += augment_steps(
                cfg, element_ops, rrc, has_mask=has_mask, files=kind == "files",
                formats=self.source.formats,
            )  # fmt: skip
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
            return mark_fused(steps)
        bs = cfg.batch_size
        steps.append(Step("batch", f"batch_size {bs}", dataset_fn=lambda ds: ds.batch(bs)))
        steps += batch_op_steps(cfg, self.seed + 1, batch_ops)
        steps.append(Step("prefetch", "AUTOTUNE", dataset_fn=lambda ds: ds.prefetch(AUTOTUNE)))
        return mark_fused(steps)

    def _read_steps(self, idx: np.ndarray, decode: bool) -> list[Step]:
        src, cfg = self.source, self.data_config
        has_mask = self.target == "mask"
        channels = cfg.channels
        fmts = src.formats  # from the file scan: picks the decoder up front
        n = len(idx)
        if src.kind == "arrays":
            images = src.images[idx]
            targets = self._targets(idx)
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
            targets = np.array(src.mask_paths)[idx] if has_mask else self._targets(idx)
            steps = [
                Step(
                    "read",
                    f"{n} files of {src.name!r}" + (" with PNG masks" if has_mask else ""),
                    dataset_fn=lambda _: tf.data.Dataset.from_tensor_slices((paths, targets)),
                ),
                Step(
                    "read",
                    "tf.io.read_file",
                    element_fn=_pair(
                        (lambda x, t: (tf.io.read_file(x), tf.io.read_file(t)))
                        if has_mask
                        else (lambda x, t: (tf.io.read_file(x), t))
                    ),
                ),
            ]
            if decode:
                steps.append(
                    Step(
                        "decode",
                        f"decode {'/'.join(sorted(fmts)) if fmts else 'image'} to {channels} "
                        "channel(s)" + (", mask PNG" if has_mask else ""),
                        element_fn=_pair(
                            (lambda x, t: (T.decode_image(x, channels, fmts), T.decode_mask(t)))
                            if has_mask
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
                # decoded pixels depend on it: a cache from the fast-IDCT decoder is not reused
                "jpeg_dct": T.JPEG_DCT_METHOD,
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

    def _balance_step(self) -> Step:
        """``data.sampling: balanced``: one repeated stream per class, drawn uniformly.

        ``sample_from_datasets`` over per-class filters of the (cached) split,
        seeded, so every class is drawn equally often whatever its count; the
        stream is endless and an epoch is ``steps_per_epoch`` batches of it.
        """
        if self.target != "class":
            raise DataError(
                "data.sampling: balanced draws one class per example and needs class targets; "
                f"data.source {self.data_config.source!r} gives {self.target!r} targets. "
                "Use data.sampling: natural (and a class-weighted loss where the task has one)."
            )
        present = sorted(set(np.asarray(self.source.labels[self._indices("train")]).tolist()))
        seed = self.seed

        def balance(ds):
            streams = [ds.filter(lambda *e, k=k: tf.equal(e[1], k)).repeat() for k in present]
            return tf.data.Dataset.sample_from_datasets(
                streams, seed=seed, stop_on_empty_dataset=False
            )

        return Step(
            "balance",
            f"{len(present)} per-class streams drawn uniformly (seed {seed}), endless",
            dataset_fn=balance,
        )

    def _one_hot_fn(self):
        k = self.num_classes
        return lambda e: (e[0], tf.one_hot(e[1], k, dtype=tf.float32))

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


def _deterministic_fn(cfg, has_mask: bool):
    if has_mask:
        return _pair(lambda x, t: T.deterministic(x, cfg, t))
    return _pair(lambda x, t: (T.deterministic(x, cfg), t))


def prepare(
    data_config, seed: int = 0, source: SourceData | None = None, target: str | None = None
) -> PreparedData:
    """Load the source once (scanning its files) and assign splits.

    Args:
        data_config: the ``data:`` section (:class:`kerasflow.config.DataConfig`).
        seed: decides split hashing, shuffling and augmentation.
        source: an already loaded source (e.g. :func:`~kerasflow.pipelines.from_arrays`)
            instead of ``data.source``.
        target: the target kind the caller needs: ``class``, ``mask`` or
            ``multi_hot``; ``None`` takes what the source holds (see
            :func:`~kerasflow.pipelines.sources.load_source`).

    Raises:
        DataError: a bad file (with ``on_bad_image: error``), label, mask or folder,
            naming it; a source that cannot give ``target`` targets; MixUp,
            CutMix or RandAugment with mask targets.

    Example:
        >>> data = prepare(kerasflow.load_config().data, seed=42)
        >>> data.size("train"), data.num_classes
        >>> tags = prepare(cfg.data, seed=0, target="multi_hot")
        >>> tags.labels("test").shape  # (n, K)
    """
    if source is None:
        source = load_source(data_config, target)
    else:
        check_target(source.target, target, f"Source {source.name!r}")
    enabled = set(data_config.augment.enabled())
    if source.target == "mask" and enabled & (BATCH_OPS | {"randaugment"}):
        raise DataError(
            f"data.augment {sorted(enabled & (BATCH_OPS | {'randaugment'}))} are for class and "
            "multi-label targets. Remove them for segmentation sources."
        )
    indices = splits_lib.assign(source, data_config.split, seed=seed)
    log.info("data %s: %s", data_config.source, {k: int(len(v)) for k, v in indices.items()})
    if source.skipped:
        log.warning(
            "data %s: skipped %d bad files or records", data_config.source, len(source.skipped)
        )
    return PreparedData(data_config=data_config, source=source, indices=indices, seed=seed)


def build(
    data_config,
    split: str = "train",
    seed: int = 0,
    training: bool | None = None,
    target: str | None = None,
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(image, target)`` for one split.

    Example:
        >>> import kerasflow
        >>> cfg = kerasflow.load_config()
        >>> ds = kerasflow.pipelines.build(cfg.data, "train")
    """
    return prepare(data_config, seed, target=target).dataset(split, training=training)
