"""TFRecord sources: one label (int, string), a set of labels (int_list, string_list, multi_hot), masks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import prepare
from kerasflow.pipelines.sources import load_source
from tests.pipelines.helpers import ALL_TRAIN, data_config, examples, gradient_image, tf_example

# Labels of four records as class ids; record 1 has none.
IDS = [[0, 2], [], [1], [2, 1, 0]]
NAMES = ["ant", "bee", "cow"]
MATRIX = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], np.float32)


def _label_feature(values):
    """A label feature of the list kind its values have (kept for an empty list)."""
    kind = type(next((v for row in values for v in row), 0))
    if kind is bytes:
        return lambda row: tf.train.Feature(bytes_list=tf.train.BytesList(value=row))
    if kind is float:
        return lambda row: tf.train.Feature(float_list=tf.train.FloatList(value=row))
    return lambda row: tf.train.Feature(int64_list=tf.train.Int64List(value=row))


def _write(path, labels, bad_image_at=None):
    images = [gradient_image(6, 7, i) for i in range(len(labels))]
    feature = _label_feature(labels)
    with tf.io.TFRecordWriter(str(path)) as w:
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            data = tf.io.encode_png(img).numpy()
            if i == bad_image_at:
                data = data[:40]  # a truncated PNG
            w.write(tf_example({"image/encoded": [data], "image/class/label": feature(label)}))
    return images


def test_tfrecord(tmp_path):
    path = tmp_path / "d.tfrecord"
    images = [gradient_image(6, 7, i) for i in range(3)]
    with tf.io.TFRecordWriter(str(path)) as w:
        for i, img in enumerate(images):
            feat = {
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.encode_png(img).numpy()])
                ),
                "image/class/label": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[[b"b", b"a", b"b"][i]])
                ),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())
    cfg = data_config(source=str(path), image_size=[6, 7], channels=3, split=ALL_TRAIN,
                      normalize="none", tfrecord={"label_type": "string"})  # fmt: skip
    data = prepare(cfg)
    assert data.class_names == ["a", "b"]
    got = examples(data)
    assert [int(y) for _, y in got] == [1, 0, 1]
    np.testing.assert_array_equal(got[1][0], images[1])
    assert data.split_table()[0][0] == "d.tfrecord:0"


def test_tfrecord_segmentation_masks(tmp_path):
    path = tmp_path / "seg.tfrecord"
    mask = np.zeros((6, 8, 1), np.uint8)
    mask[:, 4:] = 2
    image = np.repeat(mask * 100, 3, axis=-1)

    def feature(data):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))

    with tf.io.TFRecordWriter(str(path)) as w:
        feats = {
            "image/encoded": feature(tf.io.encode_jpeg(image, quality=100).numpy()),
            "image/mask": feature(tf.io.encode_png(mask).numpy()),
        }
        w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    cfg = data_config(source=str(path), image_size=[6, 8], channels=3, split=ALL_TRAIN,
                      class_names=["bg", "a", "b"], tfrecord={"mask_key": "image/mask"})  # fmt: skip
    data = prepare(cfg)
    assert data.target == "mask"
    ((_, got),) = examples(data)
    np.testing.assert_array_equal(got, mask[..., 0].astype(np.int32))


LABEL_CASES = {
    "int_list": [list(ids) for ids in IDS],
    "string_list": [[NAMES[i].encode() for i in ids] for ids in IDS],
    "multi_hot": [[float(v) for v in row] for row in MATRIX],
}


@pytest.mark.parametrize("label_type", [*LABEL_CASES, "multi_hot_int"])
def test_tfrecord_multi_label_records(tmp_path, label_type):
    if label_type == "multi_hot_int":
        labels, label_type = [[int(v) for v in row] for row in MATRIX], "multi_hot"
    else:
        labels = LABEL_CASES[label_type]
    images = _write(tmp_path / "t.tfrecord", labels)
    names = NAMES if label_type != "int_list" else None  # ids: default names "0".."2"
    cfg = data_config(source=str(tmp_path / "t.tfrecord"), image_size=[6, 7], channels=3,
                      split=ALL_TRAIN, class_names=names if label_type == "multi_hot" else None,
                      tfrecord={"label_type": label_type})  # fmt: skip
    data = prepare(cfg, target="multi_hot")
    assert data.target == "multi_hot"
    assert data.class_names == (names or ["0", "1", "2"])
    np.testing.assert_array_equal(data.labels("train"), MATRIX)
    got = examples(data)
    np.testing.assert_array_equal(np.stack([t for _, t in got]), MATRIX)
    assert got[0][1].dtype == np.float32
    np.testing.assert_array_equal(got[2][0], images[2])
    assert data.split_table()[0] == (
        "t.tfrecord:0",
        "train",
        f"{data.class_names[0]}|{data.class_names[2]}",
    )


def test_tfrecord_multi_label_record_scan_skips_a_bad_record(tmp_path):
    _write(tmp_path / "t.tfrecord", LABEL_CASES["string_list"], bad_image_at=2)
    cfg = data_config(source=str(tmp_path / "t.tfrecord"), image_size=[6, 7], channels=3,
                      split=ALL_TRAIN, tfrecord={"label_type": "string_list"})  # fmt: skip
    with pytest.raises(DataError, match=r"t\.tfrecord#2: feature 'image/encoded'"):
        load_source(cfg, target="multi_hot")
    data = prepare(cfg.model_copy(update={"on_bad_image": "skip"}), target="multi_hot")
    assert [k for k, _, _ in data.split_table()] == ["t.tfrecord:0", "t.tfrecord:1", "t.tfrecord:3"]
    np.testing.assert_array_equal(data.labels("train"), MATRIX[[0, 1, 3]])
    np.testing.assert_array_equal(np.stack([t for _, t in examples(data)]), MATRIX[[0, 1, 3]])


def test_tfrecord_multi_label_bad_labels(tmp_path):
    path = tmp_path / "t.tfrecord"
    _write(path, LABEL_CASES["int_list"])
    cfg = data_config(source=str(path), class_names=["a", "b"], tfrecord={"label_type": "int_list"})
    with pytest.raises(DataError, match=r"Record t\.tfrecord:0: label 2 is outside"):
        load_source(cfg)
    _write(path, LABEL_CASES["string_list"])
    names = cfg.model_copy(
        update={"tfrecord": cfg.tfrecord.model_copy(update={"label_type": "string_list"})}
    )
    with pytest.raises(DataError, match=r"Record t\.tfrecord:0: label 'cow' is not in"):
        load_source(names.model_copy(update={"class_names": ["ant", "bee"]}))
    _write(path, [[1.0, 0.0, 2.0]] * 2)
    hot = cfg.model_copy(
        update={
            "tfrecord": cfg.tfrecord.model_copy(update={"label_type": "multi_hot"}),
            "class_names": None,
        }
    )
    with pytest.raises(DataError, match=r"must be 0 or 1; t\.tfrecord:0 has \[1.0, 0.0, 2.0\]"):
        load_source(hot)
    _write(path, [[1.0, 0.0, 1.0]] * 2)
    with pytest.raises(DataError, match="has 3 values per record but data.class_names has 2"):
        load_source(hot.model_copy(update={"class_names": ["a", "b"]}))


def test_tfrecord_one_label_asked_for_multi_hot(tmp_path):
    _write(tmp_path / "t.tfrecord", [[0], [1], [1], [0]])
    cfg = data_config(source=str(tmp_path / "t.tfrecord"))
    with pytest.raises(DataError, match="label_type to int_list, string_list or multi_hot"):
        load_source(cfg, target="multi_hot")
    assert load_source(cfg, target="class").labels.tolist() == [0, 1, 1, 0]
