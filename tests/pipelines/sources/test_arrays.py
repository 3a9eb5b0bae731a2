"""In-memory sources: digits, ``.npz`` files and :func:`from_arrays` (class and multi-hot)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import from_arrays, prepare
from kerasflow.pipelines.sources import load_source
from tests.pipelines.helpers import ALL_TRAIN, data_config, examples

TAGS = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], np.uint8)


def test_digits_default():
    data = prepare(data_config(), seed=0)
    assert data.num_classes == 10 and data.input_shape == (16, 16, 1)
    assert sum(data.size(s) for s in ("train", "validation", "test")) == 1797
    x, y = next(iter(data.dataset("test")))
    # uint8 pixels: the model's first layer applies data.normalize
    assert x.shape[1:] == (16, 16, 1) and x.dtype == tf.uint8
    assert int(tf.reduce_min(x)) == 0 and int(tf.reduce_max(x)) == 255
    np.testing.assert_array_equal(y.numpy(), data.labels("test")[: len(y)])


def test_npz_and_from_arrays(tmp_path):
    images = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3) * 5
    labels = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", x=images, y=labels)
    cfg = data_config(source=str(tmp_path / "d.npz"), image_size=[3, 3], split=ALL_TRAIN,
                      normalize="none")  # fmt: skip
    for data in (prepare(cfg), prepare(cfg, source=from_arrays(images, labels, name="d"))):
        got = examples(data)
        assert [int(y) for _, y in got] == [0, 1, 1, 0]
        np.testing.assert_array_equal(got[2][0][..., 0], images[2])
        assert data.split_table()[0] == ("d/000000", "train", 0)


def test_from_arrays_label_outside_classes():
    with pytest.raises(DataError, match="Label 2"):
        from_arrays(np.zeros((2, 4, 4), np.uint8), [0, 2], class_names=["a", "b"])


def test_npz_2d_labels_are_multi_hot(tmp_path):
    images = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    np.savez(tmp_path / "t.npz", images=images, labels=TAGS, class_names=["a", "b", "c"])
    cfg = data_config(source=str(tmp_path / "t.npz"), image_size=[3, 3], split=ALL_TRAIN)
    data = prepare(cfg, target="multi_hot")
    assert data.target == "multi_hot" and data.num_classes == 3
    assert data.source.labels.dtype == np.uint8
    np.testing.assert_array_equal(data.labels("train"), TAGS.astype(np.float32))
    got = examples(data)
    targets = np.stack([t for _, t in got])
    assert targets.dtype == np.float32
    np.testing.assert_array_equal(targets, TAGS)
    np.testing.assert_array_equal(got[3][0][..., 0], images[3])
    assert data.split_table() == [
        ("t/000000", "train", "a|c"), ("t/000001", "train", ""),
        ("t/000002", "train", "b"), ("t/000003", "train", "a|b|c"),
    ]  # fmt: skip
    # target=None takes what the source holds
    assert prepare(cfg).target == "multi_hot"


def test_multi_hot_batches_are_float_vectors():
    src = from_arrays(np.zeros((4, 5, 5, 3), np.uint8), TAGS, name="z")
    cfg = data_config(image_size=[5, 5], channels=3, batch_size=4, split=ALL_TRAIN)
    x, y = next(iter(prepare(cfg, source=src, target="multi_hot").dataset("train", training=False)))
    assert x.dtype == tf.uint8 and y.dtype == tf.float32 and y.shape == (4, 3)
    np.testing.assert_array_equal(y.numpy(), TAGS)


def test_multi_hot_values_must_be_zero_or_one():
    bad = TAGS.copy()
    bad[2, 1] = 2
    with pytest.raises(DataError, match=r"must be 0 or 1; m/000002 has \[0, 2, 0\]"):
        from_arrays(np.zeros((4, 5, 5), np.uint8), bad, name="m")
    with pytest.raises(DataError, match="3 label columns but 2 class_names"):
        from_arrays(np.zeros((4, 5, 5), np.uint8), TAGS, class_names=["a", "b"])


def test_one_label_per_image_asked_for_multi_hot(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 4), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match=r"one label per image.*2-D \(n, K\) 0/1 array"):
        load_source(data_config(source=str(tmp_path / "d.npz")), target="multi_hot")
    with pytest.raises(DataError, match="'digits' has one label per image"):
        load_source(data_config(), target="multi_hot")


def test_multi_hot_source_asked_for_one_class():
    src = from_arrays(np.zeros((4, 5, 5), np.uint8), TAGS, name="tags")
    with pytest.raises(DataError, match="'tags' is multi-label.*experiment.task: multilabel"):
        prepare(data_config(image_size=[5, 5]), source=src, target="class")
