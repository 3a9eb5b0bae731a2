"""TFDS sources: mock and offline-prepared datasets, with class, multi-label and mask targets."""

from __future__ import annotations

import numpy as np
import pytest

from kerasflow.errors import DataError
from kerasflow.pipelines import prepare
from kerasflow.pipelines.sources import load_source
from tests.pipelines.helpers import data_config, examples, make_tfds


def test_tfds_mock_source_splits():
    import tensorflow_datasets as tfds

    cfg = data_config(source="tfds:mnist", image_size=[28, 28], channels=1)
    with tfds.testing.mock_data(num_examples=12):
        data = prepare(cfg, seed=0)
        assert data.class_names == [str(i) for i in range(10)]
        # mnist has train and test; mock data also answers "validation"
        assert data.size("train") == 12 and data.size("test") == 12
        x, y = next(iter(data.dataset("test")))
        assert x.shape == (12, 28, 28, 1)
        np.testing.assert_array_equal(y.numpy(), data.labels("test"))
        table = data.split_table()
        assert all(k.startswith("mnist-") for k, _, _ in table)


def test_tfds_mock_carves_validation_from_train():
    import tensorflow_datasets as tfds

    cfg = data_config(
        source="tfds:mnist",
        image_size=[28, 28],
        split={"train": 0.5, "validation": 0.5, "test": 0.0,
               "source_names": {"train": "train", "test": "test"}},
    )  # fmt: skip
    with tfds.testing.mock_data(num_examples=20):
        data = prepare(cfg, seed=0)
        assert data.size("train") + data.size("validation") == 20
        assert 0 < data.size("validation") < 20
        val = {k for k, s, _ in data.split_table() if s == "validation"}
        assert all("train" in k for k in val)
        assert len(list(data.dataset("validation", batch=False))) == data.size("validation")


@pytest.fixture(scope="module")
def toy_tfds_dir(tmp_path_factory):
    """A real TFDS dataset (image + segmentation_mask) prepared offline in a temp data_dir."""
    import tensorflow_datasets as tfds

    def rows_of(n, offset=0):
        rows = []
        for i in range(n):
            m = np.zeros((10, 12, 1), np.uint8)
            m[:, :6] = 1
            m[1:4, 8:11] = 2
            img = np.concatenate([m * 100, m * 50, 255 - m * 80], -1).astype(np.uint8)
            rows.append((f"ex{i + offset}", {"image": img, "segmentation_mask": m}))
        return rows

    features = {
        "image": tfds.features.Image(shape=(None, None, 3)),
        "segmentation_mask": tfds.features.Image(shape=(None, None, 1)),
    }
    splits = {"train": rows_of(6), "test": rows_of(2, 100)}
    return make_tfds(tmp_path_factory.mktemp("tfds"), "ToySegmentation", features, splits)


def test_tfds_segmentation_prepared_offline(toy_tfds_dir):
    cfg = data_config(
        source="tfds:toy_segmentation:1.0.0", image_size=[10, 12], channels=3,
        class_names=["bg", "left", "box"],
        tfds={"mask_key": "segmentation_mask", "data_dir": str(toy_tfds_dir), "download": False},
    )  # fmt: skip
    data = prepare(cfg)
    assert data.target == "mask"
    assert data.size("train") + data.size("validation") == 6 and data.size("test") == 2
    x, m = next(iter(data.dataset("test")))
    assert x.shape == (2, 10, 12, 3) and m.shape == (2, 10, 12)
    assert set(np.unique(m.numpy())) == {0, 1, 2} and (m.numpy()[:, :, :6] == 1).all()


def test_tfds_not_prepared_and_download_false(tmp_path):
    cfg = data_config(source="tfds:mnist", tfds={"data_dir": str(tmp_path)})
    with pytest.raises(DataError, match=r"cannot be read from .*download: true"):
        load_source(cfg)


TAGS = [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]]


@pytest.fixture(scope="module")
def tagged_tfds_dir(tmp_path_factory):
    """A real TFDS dataset prepared offline with two multi-label features of the same labels:

    ``labels``, a Sequence(ClassLabel) (the ids present, like VOC's ``labels``),
    and ``tags``, a fixed (3,) 0/1 tensor. Image i is filled with 40 * i.
    """
    import tensorflow_datasets as tfds

    rows = [
        (
            f"ex{i}",
            {
                "image": np.full((5, 6, 3), 40 * i, np.uint8),
                "labels": [k for k in (2, 0, 1) if t[k]],  # any order
                "tags": np.array(t, np.int64),
            },
        )
        for i, t in enumerate(TAGS)
    ]
    features = {
        "image": tfds.features.Image(shape=(None, None, 3)),
        "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=["ant", "bee", "cow"])),
        "tags": tfds.features.Tensor(shape=(3,), dtype=np.int64),
    }
    return make_tfds(tmp_path_factory.mktemp("tagged"), "ToyTags", features, {"train": rows})


def _tagged_config(data_dir, label_key, class_names=None):
    return data_config(
        source="tfds:toy_tags:1.0.0", image_size=[5, 6], channels=3, class_names=class_names,
        tfds={"label_key": label_key, "data_dir": str(data_dir)},
        split={"mode": "source", "source_names": {"train": "train"},
               "train": 1.0, "validation": 0.0, "test": 0.0},
    )  # fmt: skip


def _by_image(data):
    """Each example's target by its image's index (pixels are 40 * index)."""
    return {int(image[0, 0, 0]) // 40: target for image, target in examples(data)}


def test_tfds_sequence_of_class_labels_is_multi_hot(tagged_tfds_dir):
    data = prepare(_tagged_config(tagged_tfds_dir, "labels"), target="multi_hot")
    assert data.target == "multi_hot" and data.class_names == ["ant", "bee", "cow"]
    assert data.size("train") == 4 and data.labels("train").shape == (4, 3)
    got = _by_image(data)
    for i, row in enumerate(TAGS):
        np.testing.assert_array_equal(got[i], row)
    assert sorted(y for _, _, y in data.split_table()) == ["", "ant|bee|cow", "ant|cow", "bee"]
    with pytest.raises(DataError, match="multi-label.*experiment.task: multilabel"):
        load_source(_tagged_config(tagged_tfds_dir, "labels"), target="class")


def test_tfds_fixed_vector_feature_is_multi_hot(tagged_tfds_dir):
    cfg = _tagged_config(tagged_tfds_dir, "tags", ["red", "green", "blue"])
    data = prepare(cfg, target="multi_hot")
    assert data.class_names == ["red", "green", "blue"] and data.size("train") == 4
    got = _by_image(data)
    for i, row in enumerate(TAGS):
        np.testing.assert_array_equal(got[i], row)
    assert prepare(_tagged_config(tagged_tfds_dir, "tags")).class_names == ["0", "1", "2"]
    with pytest.raises(DataError, match="3 values per image but data.class_names has 2"):
        load_source(_tagged_config(tagged_tfds_dir, "tags", ["red", "green"]))


def test_tfds_class_label_asked_for_multi_hot():
    import tensorflow_datasets as tfds

    cfg = data_config(source="tfds:mnist", image_size=[28, 28])
    with (
        tfds.testing.mock_data(num_examples=4),
        pytest.raises(DataError, match=r"label_key at a Sequence\(ClassLabel\)"),
    ):
        load_source(cfg, target="multi_hot")
