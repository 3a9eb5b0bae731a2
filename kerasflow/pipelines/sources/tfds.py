"""TensorFlow Datasets sources: ``tfds:<name>[:<version>]`` through ``tfds.builder``.

The label feature (``data.tfds.label_key``) decides the target kind: a
``ClassLabel`` (or int) gives ``class`` targets; a ``Sequence(ClassLabel)``
(a list of class ids, e.g. VOC's ``labels``) or a fixed ``(K,)`` tensor gives
``multi_hot`` targets; ``data.tfds.mask_key`` gives ``mask`` targets. Detection
datasets (an ``objects`` feature with boxes) are read by
:func:`load_tfds_detection`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines import record_scan
from kerasflow.pipelines.sources.boxes import DetectionStreams
from kerasflow.pipelines.sources.source_data import (
    SourceData,
    check_multi_hot,
    check_target,
    checked_decoder,
    keep_only,
    screen_records,
)

MULTI_HOT_HINT = (
    "Point data.tfds.label_key at a Sequence(ClassLabel) feature (a list of labels per "
    "image) or a fixed (K,) 0/1 feature for multi-label data."
)


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


def _builder(source: str, data_config):
    """``(builder, "name:version")``; downloads first when ``data.tfds.download`` is on."""
    import tensorflow_datasets as tfds

    name, version = parse_tfds_source(source)
    opts = data_config.tfds
    full = f"{name}:{version}" if version else name
    try:
        builder = tfds.builder(full, data_dir=opts.data_dir)
    except Exception as exc:  # noqa: BLE001 - tfds raises several types for unknown names
        raise DataError(
            f"TFDS dataset {full!r} is not available: {exc}. Check the name and version."
        ) from exc
    if opts.download:
        builder.download_and_prepare()
    return builder, full


def _label_kind(feature) -> tuple[str, list[str] | None, int | None]:
    """``(kind, names, K)`` of a label feature: ``class``, ``ids`` or ``vector``."""
    import tensorflow_datasets as tfds

    inner = getattr(feature, "feature", None)
    if isinstance(feature, tfds.features.Sequence) and isinstance(inner, tfds.features.ClassLabel):
        return "ids", list(inner.names), inner.num_classes
    shape = tuple(getattr(feature, "shape", ()) or ())
    if len(shape) == 1 and shape[0] is not None:
        return "vector", None, int(shape[0])
    return "class", list(getattr(feature, "names", None) or []), None


def load_tfds_source(source: str, data_config, target: str | None = None) -> SourceData:
    """A TensorFlow Datasets dataset through ``tfds.builder(...).as_dataset``.

    With ``data.tfds.download: false`` the data must already be prepared in
    ``data.tfds.data_dir``; nothing is downloaded. Encoded images (and masks)
    are decoded once here, like TFRecord records; a bad one is named by its
    ``tfds_id`` (``<dataset>-<split>.tfrecord-<shard>__<index>``).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from kerasflow.pipelines import transforms

    builder, full = _builder(source, data_config)
    opts = data_config.tfds
    features = builder.info.features
    for key in [opts.image_key, opts.mask_key or opts.label_key]:
        if key not in features:
            raise DataError(
                f"TFDS dataset {full!r} has no feature {key!r} (features: {sorted(features)}). "
                "Set data.tfds.image_key / label_key / mask_key."
            )
    segmentation = opts.mask_key is not None
    kind, width = "class", None
    if segmentation:
        names = list(data_config.class_names or [])
        if not names:
            raise DataError(
                f"TFDS segmentation source {full!r} needs data.class_names "
                "(one name per mask value)."
            )
    else:
        kind, names, width = _label_kind(features[opts.label_key])
        names = list(names or data_config.class_names or [])
        if kind == "vector" and not names:
            names = [str(i) for i in range(width)]
        if data_config.class_names is not None and names != list(data_config.class_names):
            raise DataError(
                f"data.class_names {data_config.class_names} does not match the labels of "
                f"{full!r}: {names}. Remove class_names or fix it."
            )
        if kind == "vector" and len(names) != width:
            raise DataError(
                f"Feature {opts.label_key!r} of {full!r} has {width} values per image but "
                f"data.class_names has {len(names)}. Give one name per value."
            )
    found = "mask" if segmentation else ("class" if kind == "class" else "multi_hot")
    check_target(found, target, f"TFDS dataset {full!r}", MULTI_HOT_HINT)
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

    num = len(names)

    def target_of(ex):
        label = ex[opts.label_key]
        if kind == "ids":
            hot = tf.one_hot(tf.cast(tf.reshape(label, [-1]), tf.int32), num, dtype=tf.float32)
            return tf.minimum(tf.reduce_sum(hot, axis=0), 1.0)
        if kind == "vector":
            return tf.cast(label, tf.float32)
        return tf.cast(label, tf.int64)

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
            ds = ds.map(lambda ex: (ex["tfds_id"], target_of(ex)))
        try:
            start = len(keys)
            for ids, labs in ds.batch(4096).as_numpy_iterator():
                keys.extend(k.decode() for k in ids)
                labels.extend(labs)
            parts.extend([part] * (len(keys) - start))
            positions.extend(range(len(keys) - start))
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise DataError(f"TFDS dataset {full!r} split {part!r} failed to read: {exc}") from exc
    if found == "multi_hot":
        labels = np.stack(labels) if labels else np.zeros((0, num))
        check_multi_hot(labels, f"TFDS dataset {full!r} feature {opts.label_key!r}", keys)
        labels = labels.astype(np.uint8)
    else:
        labels = np.array(labels, np.int64)
    if found == "class" and not names:
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
        return image, target_of(ex)

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
        found_records = record_scan.scan_records(
            open_part(part, skip_images=True), len(rows), checked_decoder(decoder, segmentation),
            encoded, lambda ex: {k: [ex[k].numpy()] for k in encoded},
        )  # fmt: skip
        where = f" of TFDS dataset {full!r} split {part!r}"
        keep_by_part[part], bad = screen_records(
            found_records, [keys[i] for i in rows], where, data_config
        )
        keep[rows] = keep_by_part[part]
        sizes[rows] = found_records.sizes
        skipped.extend(bad)

    def reader(part):
        ds = open_part(part, skip_images=True)
        return keep_only(ds, keep_by_part[part]) if part in keep_by_part else ds

    kept = np.flatnonzero(keep)
    parts = [parts[i] for i in kept]
    seen: Counter = Counter()  # positions count the kept records of each part
    positions = []
    for p in parts:
        positions.append(seen[p])
        seen[p] += 1
    return SourceData(
        name=source, kind="stream", target=found, keys=[keys[i] for i in kept],
        labels=labels[kept], class_names=names, parts=parts,
        positions=np.array(positions, np.int64), reader=reader, decoder=decoder, skipped=skipped,
        sizes=sizes[kept] if scanned else None,
    )  # fmt: skip


# --------------------------------------------------------------------------- detection
def open_tfds_detection(source: str, data_config):
    """``(builder, "name:version", class names)`` of a TFDS detection dataset, checked.

    The dataset needs an image (``data.tfds.image_key``) and a sequence of
    objects (``data.detection.objects_key``) with boxes (``bbox_key``) and
    class labels (``label_key``); class names come from the label feature or
    ``data.class_names``.
    """
    builder, full = _builder(source, data_config)
    opts, det = data_config.tfds, data_config.detection
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


def load_tfds_detection(source: str, data_config) -> DetectionStreams:
    """A TFDS detection dataset; each kerasflow split reads the TFDS split named for it.

    Each split's stream gives ``(uint8 image, boxes [n, 4] yxyx fractions, classes [n])``.
    """
    import tensorflow as tf

    from kerasflow.pipelines import transforms

    builder, full, names = open_tfds_detection(source, data_config)
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
                image = transforms.to_channels(ex[opts.image_key], channels)
                obj = ex[det.objects_key]
                boxes = tf.clip_by_value(
                    tf.reshape(tf.cast(obj[det.bbox_key], tf.float32), [-1, 4]), 0, 1
                )
                labels = tf.cast(tf.reshape(obj[det.label_key], [-1]), tf.int32)
                # Both are per-object sequences; a malformed record must not shift ids.
                n = tf.minimum(tf.shape(boxes)[0], tf.shape(labels)[0])
                return image, boxes[:n], labels[:n]

            return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        count = int(open_split().cardinality().numpy())
        if count < 0:
            count = sum(1 for _ in open_split())
        streams[split] = (open_split, count)
    return DetectionStreams(name=source, class_names=names, streams=streams)
