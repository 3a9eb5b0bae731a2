"""Decoding every record of a stream source (TFRecord, TFDS) once, before training.

Files are checked with Pillow before training (``scan.py``); a record's image
is encoded bytes inside a bigger file, so :func:`scan_records` runs the
source's own ``tf.data`` decoder over every record once, in parallel, and
keeps the index of each record that decodes. Only the few that fail are read
again, one by one, to say why (:func:`record_problem`), naming the feature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from kerasflow.pipelines import scan as scan_lib
from kerasflow.progress import Stage


@dataclass
class RecordScan:
    """What :func:`scan_records` found.

    Attributes:
        problems: ``{index: reason}`` of every record that does not decode.
        sizes: ``(count, 2)`` height and width of each decoded image (0 for a bad one).
    """

    problems: dict[int, str]
    sizes: np.ndarray

    def keep(self) -> np.ndarray:
        """A bool per record: True where it decodes."""
        keep = np.ones(len(self.sizes), bool)
        keep[list(self.problems)] = False
        return keep


def scan_records(
    ds: tf.data.Dataset,
    count: int,
    check: Callable,
    encoded: dict[str, Callable],
    features: Callable,
) -> RecordScan:
    """Run ``check`` on each of the ``count`` records of ``ds`` once.

    Args:
        ds: the records in the source's fixed order.
        count: how many records ``ds`` holds.
        check: maps one record to its decoded image (raising, inside
            ``tf.data``, when the record is bad).
        encoded: feature key -> TF decode function of that feature's bytes
            (the image, and the mask of a segmentation source).
        features: maps one record (eager) to ``{feature key: list of bytes}``.
    """
    decoded = ds.enumerate().map(
        lambda i, record: (i, tf.shape(check(record))[:2]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    sizes = np.zeros((count, 2), np.int64)
    found = np.zeros(count, bool)
    with Stage("decoding every record", total=count, unit="record") as stage:
        for ids, hw in decoded.ignore_errors().batch(1024).as_numpy_iterator():
            found[ids] = True
            sizes[ids] = hw
            stage.update(len(ids))
    bad = np.flatnonzero(~found)
    if not len(bad):
        return RecordScan({}, sizes)
    wanted = tf.constant(bad, tf.int64)
    again = ds.enumerate().filter(lambda i, _r: tf.reduce_any(tf.equal(i, wanted)))
    problems = {int(i): record_problem(record, check, encoded, features) for i, record in again}
    return RecordScan(problems, sizes)


def record_problem(record, check: Callable, encoded: dict[str, Callable], features) -> str:
    """Why one record does not decode: the feature and what is wrong with its bytes."""
    try:
        values = features(record)
    except tf.errors.OpError as exc:
        return f"not a readable record ({_first_line(exc.message)})"
    for key, decode in encoded.items():
        data = values.get(key, [])
        if len(data) != 1:
            return f"feature {key!r} holds {len(data)} values, not one encoded image"
        info = scan_lib.scan_bytes(data[0], key)
        if info.problem is not None:
            return f"feature {key!r}: {info.problem}"
        try:
            decode(tf.constant(data[0]))
        except tf.errors.OpError as exc:
            return f"feature {key!r}: TensorFlow cannot decode it ({_first_line(exc.message)})"
    try:
        check(record)
    except tf.errors.OpError as exc:
        return _first_line(exc.message)
    return "failed to decode inside tf.data"  # a transient failure: decodes when retried


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:300] if message.strip() else "no message"
