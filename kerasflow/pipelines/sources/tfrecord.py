"""TFRecord files of ``tf.train.Example``: an encoded image and a label, labels or a mask.

The feature names and the label's form come from ``data.tfrecord``
(``label_type``):

* ``int``: one int64 class id (``class`` targets);
* ``string``: one class name (``class``);
* ``int_list``: any number of int64 class ids (``multi_hot``);
* ``string_list``: any number of class names (``multi_hot``);
* ``multi_hot``: a fixed-length ``(K,)`` float or int 0/1 vector (``multi_hot``).

With ``mask_key`` set, the records hold an encoded PNG mask instead (``mask``).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from kerasflow.errors import DataError
from kerasflow.pipelines import record_scan
from kerasflow.pipelines.sources.source_data import (
    SourceData,
    check_multi_hot,
    check_target,
    checked_decoder,
    keep_only,
    label_names,
    multi_hot,
    screen_records,
)

LIST_TYPES = ("int_list", "string_list")
MULTI_LABEL_TYPES = (*LIST_TYPES, "multi_hot")
MULTI_HOT_HINT = (
    "Set data.tfrecord.label_type to int_list, string_list or multi_hot (and label_key to "
    "that feature) for multi-label records."
)


def _multi_hot_feature(files: list[str], key: str):
    """``(dtype, K)`` of a fixed-length multi-hot feature, from the first record."""
    import tensorflow as tf

    for f in files:
        try:
            first = list(tf.data.TFRecordDataset(f).take(1).as_numpy_iterator())
        except tf.errors.OpError as exc:
            raise DataError(f"Cannot read TFRecord {f}: {exc.message}. Fix the file.") from None
        if not first:
            continue
        example = tf.train.Example.FromString(first[0])
        if key not in example.features.feature:
            raise DataError(
                f"Record {f}#0 has no feature {key!r} (features: "
                f"{sorted(example.features.feature)}). Set data.tfrecord.label_key."
            )
        feature = example.features.feature[key]
        kind = feature.WhichOneof("kind")
        if kind == "float_list":
            return tf.float32, len(feature.float_list.value)
        if kind == "int64_list":
            return tf.int64, len(feature.int64_list.value)
        raise DataError(
            f"Feature {key!r} of record {f}#0 holds {kind}; label_type multi_hot needs a "
            "float_list or int64_list of K 0/1 values. Fix data.tfrecord.label_type."
        )
    return tf.float32, 0


def load_tfrecord_source(pattern: str, data_config, target: str | None = None) -> SourceData:
    """TFRecord files of ``tf.train.Example`` with an encoded image and a label (or mask).

    The feature names come from ``data.tfrecord``. Keys are ``<file>:<index>``.
    Every record's image (and mask) is decoded once here, so a bad one stops the
    run before training (``on_bad_image: error``) or is left out and listed as
    ``<file>#<index>`` (``skip``). Class names come from ``data.class_names``,
    else the sorted names (``string``, ``string_list``) or ``"0".."K-1"``.
    """
    import tensorflow as tf

    from kerasflow.pipelines import transforms

    files = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise DataError(f"No TFRecord files match data.source {pattern!r}. Check the path.")
    spec = data_config.tfrecord
    segmentation = spec.mask_key is not None
    label_type = spec.label_type
    found = "mask" if segmentation else (
        "multi_hot" if label_type in MULTI_LABEL_TYPES else "class"
    )  # fmt: skip
    check_target(found, target, f"TFRecord source {pattern!r}", MULTI_HOT_HINT)
    features = {spec.image_key: tf.io.FixedLenFeature([], tf.string)}
    width = 0
    if segmentation:
        features[spec.mask_key] = tf.io.FixedLenFeature([], tf.string)
    elif label_type == "multi_hot":
        dtype, width = _multi_hot_feature(files, spec.label_key)
        features[spec.label_key] = tf.io.FixedLenFeature([width], dtype)
    elif label_type in LIST_TYPES:
        dtype = tf.int64 if label_type == "int_list" else tf.string
        features[spec.label_key] = tf.io.VarLenFeature(dtype)
    else:
        dtype = tf.int64 if label_type == "int" else tf.string
        features[spec.label_key] = tf.io.FixedLenFeature([], dtype)

    def parse(record):
        return tf.io.parse_single_example(record, features)

    def dense(parsed):
        return {
            k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
            for k, v in parsed.items()
        }

    # One pass over labels only (images stay encoded), in batches: labels and keys.
    label_features = {k: v for k, v in features.items() if k != spec.image_key}
    keys, raw_labels, names_in_files = [], [], []
    for f in files:
        ds = tf.data.TFRecordDataset(f).map(
            lambda rec: dense(tf.io.parse_single_example(rec, label_features)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        n = 0
        try:
            batches = ds.ragged_batch(4096) if label_type in LIST_TYPES else ds.batch(4096)
            for batch in batches.as_numpy_iterator():
                if not segmentation:
                    raw_labels.extend(_python_labels(batch[spec.label_key], label_type))
                n += len(next(iter(batch.values())))
        except tf.errors.OpError as exc:
            raise DataError(
                f"Cannot read TFRecord {f} with features {sorted(features)} "
                f"(data.tfrecord, label_type {label_type}): {exc.message}. Fix data.tfrecord "
                "or the file."
            ) from None
        keys.extend(f"{Path(f).name}:{i}" for i in range(n))
        names_in_files.extend(f"{f}#{i}" for i in range(n))
    names, labels = _labels(raw_labels, keys, label_type, width, data_config, segmentation)
    names_t = names
    channels = data_config.channels
    k = len(names)

    def decoder(record):
        ex = parse(record)
        image = transforms.decode_image(ex[spec.image_key], channels)
        if segmentation:
            return image, transforms.decode_mask(ex[spec.mask_key])
        label = ex[spec.label_key]
        if label_type == "string":
            hit = tf.cast(tf.equal(tf.constant(names_t), label), tf.int64)
            label = tf.argmax(hit, output_type=tf.int64)
        elif label_type == "int_list":
            hot = tf.reduce_sum(tf.one_hot(label.values, k, dtype=tf.float32), axis=0)
            label = tf.minimum(hot, 1.0)
        elif label_type == "string_list":
            hits = tf.equal(tf.constant(names_t)[None, :], label.values[:, None])
            label = tf.cast(tf.reduce_any(hits, axis=0), tf.float32)
        elif label_type == "multi_hot":
            label = tf.cast(label, tf.float32)
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
        scanned = record_scan.scan_records(
            tf.data.TFRecordDataset(files), len(keys), checked_decoder(decoder, segmentation),
            encoded, features_of,
        )  # fmt: skip
        keep, skipped = screen_records(scanned, names_in_files, "", data_config)
        sizes = scanned.sizes[keep]

    def reader(part):
        del part  # TFRecord sources have no splits of their own
        return keep_only(tf.data.TFRecordDataset(files), keep)

    keys = [key for key, ok in zip(keys, keep, strict=True) if ok]
    return SourceData(
        name=pattern, kind="stream", target=found, keys=keys, labels=labels[keep],
        class_names=names, parts=[""] * len(keys), positions=np.arange(len(keys)),
        reader=reader, decoder=decoder, skipped=skipped, sizes=sizes,
    )  # fmt: skip


def _python_labels(values, label_type: str) -> list:
    """One batch of parsed labels as Python values (names decoded, lists as lists)."""

    def one(v):
        return v.decode() if isinstance(v, bytes) else int(v)

    if label_type in LIST_TYPES:
        return [[one(x) for x in row] for row in values]
    if label_type == "multi_hot":
        return [np.asarray(row) for row in values]
    return [one(v) for v in values]


def _labels(raw, keys, label_type: str, width: int, data_config, segmentation: bool):
    """``(class names, labels)`` of the records from the label pass, checked."""
    given = data_config.class_names
    if segmentation:
        names = list(given or [])
        if not names:
            raise DataError(
                "A TFRecord segmentation source needs data.class_names (one per mask value)."
            )
        return names, np.zeros(len(keys), np.int64)
    if label_type in ("string", "string_list"):
        rows = [[x] for x in raw] if label_type == "string" else raw
        names = label_names([x for row in rows for x in row], given)
        index = {name: i for i, name in enumerate(names)}
        for key, row in zip(keys, rows, strict=True):
            for lab in row:
                if lab not in index:
                    raise DataError(
                        f"Record {key}: label {lab!r} is not in data.class_names {names}. "
                        "Fix the record or the class names."
                    )
        ids = [[index[x] for x in row] for row in rows]
        if label_type == "string":
            return names, np.array([i[0] for i in ids], np.int64)
        return names, multi_hot(ids, len(names))
    if label_type == "multi_hot":
        names = list(given or [str(i) for i in range(width)])
        if len(names) != width:
            raise DataError(
                f"The multi_hot feature {data_config.tfrecord.label_key!r} has {width} values "
                f"per record but data.class_names has {len(names)} ({names}). Give one name "
                "per value."
            )
        labels = np.stack(raw) if raw else np.zeros((0, width))
        check_multi_hot(labels, "the TFRecord source", keys)
        return names, labels.astype(np.uint8)
    rows = [[x] for x in raw] if label_type == "int" else raw
    flat = [x for row in rows for x in row]
    top = max(flat) + 1 if flat else 0
    names = list(given or [str(i) for i in range(top)])
    for key, row in zip(keys, rows, strict=True):
        bad = [x for x in row if x < 0 or x >= len(names)]
        if bad:
            raise DataError(
                f"Record {key}: label {bad[0]} is outside data.class_names "
                f"({len(names)} classes). Fix the record or data.class_names."
            )
    if label_type == "int":
        return names, np.array(flat, np.int64)
    return names, multi_hot(rows, len(names))
