"""Each source yields the same (image, target) contract with real pixel values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasflow.errors import DataError
from kerasflow.pipelines import from_arrays, prepare
from kerasflow.pipelines.sources import load_source
from tests.pipelines.helpers import COLOURS, data_config, gradient_image, make_tfds, save

ALL_TRAIN = {"train": 1.0, "validation": 0.0, "test": 0.0}


def _examples(prepared, split="train"):
    return list(prepared.dataset(split, training=False, batch=False).as_numpy_iterator())


def test_digits_default():
    data = prepare(data_config(), seed=0)
    assert data.num_classes == 10 and data.input_shape == (16, 16, 1)
    assert sum(data.size(s) for s in ("train", "validation", "test")) == 1797
    x, y = next(iter(data.dataset("test")))
    # uint8 pixels: the model's first layer applies data.normalize
    assert x.shape[1:] == (16, 16, 1) and x.dtype == tf.uint8
    assert int(tf.reduce_min(x)) == 0 and int(tf.reduce_max(x)) == 255
    np.testing.assert_array_equal(y.numpy(), data.labels("test")[: len(y)])


def test_folder_discovers_sorted_classes_and_pixels(class_folder):
    cfg = data_config(source=str(class_folder), image_size=[6, 5], channels=3, split=ALL_TRAIN)
    data = prepare(cfg)
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.size("train") == 12
    for image, label in _examples(data):
        colour = np.array(COLOURS[data.class_names[label]])
        # flat colour images: every pixel is the class colour (JPEG within a few levels)
        assert image.dtype == np.uint8 and np.abs(image.astype(int) - colour).max() < 6
    keys = [k for k, _, _ in data.split_table()]
    assert "cat/cat_0.png" in keys and "fox/fox_3.jpg" in keys


def test_folder_given_class_names_order(class_folder):
    cfg = data_config(source=str(class_folder), class_names=["fox", "cat", "dog"], split=ALL_TRAIN)
    src = load_source(cfg)
    assert src.class_names == ["fox", "cat", "dog"]
    assert dict(zip(src.keys, src.labels, strict=True))["fox/fox_0.png"] == 0


def test_folder_class_names_missing_folder(class_folder):
    cfg = data_config(source=str(class_folder), class_names=["cat", "dog", "fox", "owl"])
    with pytest.raises(DataError, match="owl"):
        load_source(cfg)


def test_manifest_csv_and_jsonl(tmp_path):
    img_a = save(gradient_image(8, 8, 1), tmp_path / "imgs" / "a.png")
    save(gradient_image(8, 8, 2), tmp_path / "imgs" / "b.png")
    (tmp_path / "m.csv").write_text("path,label\nimgs/a.png,zebra\nimgs/b.png,ant\n")
    rows = [{"path": "imgs/a.png", "label": "zebra"}, {"path": "imgs/b.png", "label": "ant"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for name in ("m.csv", "m.jsonl"):
        cfg = data_config(source=str(tmp_path / name), image_size=[8, 8], channels=3,
                          split=ALL_TRAIN, normalize="none")  # fmt: skip
        data = prepare(cfg)
        assert data.class_names == ["ant", "zebra"]
        assert data.split_table() == [("imgs/a.png", "train", 1), ("imgs/b.png", "train", 0)]
        image, label = _examples(data)[0]
        assert label == 1
        np.testing.assert_allclose(image, np.asarray(tf.io.decode_png(img_a.read_bytes())))


def test_manifest_label_outside_class_names(tmp_path):
    save(gradient_image(8, 8), tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("a.png,zebra\n")
    cfg = data_config(source=str(tmp_path / "m.csv"), class_names=["ant"])
    with pytest.raises(DataError, match=r"line 1.*'zebra'.*a\.png"):
        load_source(cfg)


def test_npz_and_from_arrays(tmp_path):
    images = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3) * 5
    labels = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", x=images, y=labels)
    cfg = data_config(source=str(tmp_path / "d.npz"), image_size=[3, 3], split=ALL_TRAIN,
                      normalize="none")  # fmt: skip
    for data in (prepare(cfg), prepare(cfg, source=from_arrays(images, labels, name="d"))):
        got = _examples(data)
        assert [int(y) for _, y in got] == [0, 1, 1, 0]
        np.testing.assert_array_equal(got[2][0][..., 0], images[2])
        assert data.split_table()[0] == ("d/000000", "train", 0)


def test_from_arrays_label_outside_classes():
    with pytest.raises(DataError, match="Label 2"):
        from_arrays(np.zeros((2, 4, 4), np.uint8), [0, 2], class_names=["a", "b"])


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
    got = _examples(data)
    assert [int(y) for _, y in got] == [1, 0, 1]
    np.testing.assert_array_equal(got[1][0], images[1])
    assert data.split_table()[0][0] == "d.tfrecord:0"


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


def test_segmentation_pairs(seg_folder):
    cfg = data_config(source=str(seg_folder), image_size=[16, 16], channels=3, split=ALL_TRAIN,
                      class_names=["bg", "left", "box"])  # fmt: skip
    data = prepare(cfg)
    assert data.target == "mask" and data.num_classes == 3
    image, mask = _examples(data)[0]
    assert image.shape == (16, 16, 3) and mask.shape == (16, 16) and mask.dtype == np.int32
    assert set(np.unique(mask)) == {0, 1, 2}
    assert (mask[:, :8] == 1).all() and (mask[2:6, 10:14] == 2).all()
    assert data.labels("train").shape == (6, 16, 16)


def test_segmentation_mask_without_image(tmp_path):
    from tests.pipelines.helpers import make_segmentation_folder

    root = make_segmentation_folder(tmp_path, count=2)
    save(np.zeros((16, 16), np.uint8), root / "masks" / "orphan.png")
    with pytest.raises(DataError, match=r"orphan\.png has no image"):
        load_source(data_config(source=str(root)))


def test_segmentation_palette_mask_rejected(tmp_path):
    from PIL import Image

    from tests.pipelines.helpers import make_segmentation_folder

    root = make_segmentation_folder(tmp_path, count=1)
    Image.fromarray(np.zeros((16, 16), np.uint8)).convert("P").save(root / "masks" / "s0.png")
    with pytest.raises(DataError, match=r"s0\.png is a PNG of mode 'P'"):
        load_source(data_config(source=str(root)))


def test_synthetic_shapes_is_deterministic(tmp_path):
    from kerasflow.pipelines import synthetic

    a = synthetic.write_shapes_segmentation(tmp_path / "a", num_images=4, size=24)
    b = synthetic.write_shapes_segmentation(tmp_path / "b", num_images=4, size=24)
    for sub in ("images/0003.png", "masks/0003.png"):
        assert (a / sub).read_bytes() == (b / sub).read_bytes()
    cfg = data_config(source="synthetic:shapes_segmentation", root=str(tmp_path),
                      image_size=[24, 24], channels=3)  # fmt: skip
    src = load_source(cfg)
    assert src.class_names == ["background", "circle", "square", "triangle"]
    assert len(src) == synthetic.SEGMENTATION_DEFAULTS["num_images"]
    masks = [np.asarray(Image.open(p)) for p in src.mask_paths]
    assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) == {0, 1, 2, 3}


def test_unknown_source_message(tmp_path):
    with pytest.raises(DataError, match="not a known source"):
        load_source(data_config(source=str(tmp_path / "nope")))


@pytest.fixture(scope="module")
def toy_tfds_dir(tmp_path_factory):
    """A real TFDS dataset (image + segmentation_mask) prepared offline in a temp data_dir."""
    import tensorflow_datasets as tfds

    def examples(n, offset=0):
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
    splits = {"train": examples(6), "test": examples(2, 100)}
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
    ((_, got),) = _examples(data)
    np.testing.assert_array_equal(got, mask[..., 0].astype(np.int32))


def test_folder_with_split_subfolders_keeps_its_splits(tmp_path):
    from tests.pipelines.helpers import make_class_folder

    make_class_folder(tmp_path / "train", per_class=6, size=(4, 4))
    make_class_folder(tmp_path / "test", per_class=1, size=(4, 4))
    cfg = data_config(source=str(tmp_path), image_size=[4, 4], channels=3,
                      split={"train": 0.5, "validation": 0.5, "test": 0.0})  # fmt: skip
    data = prepare(cfg, seed=0)
    assert data.class_names == ["cat", "dog", "fox"]
    table = data.split_table()
    assert {k for k, s, _ in table if s == "test"} == {f"test/{c}/{c}_0.png" for c in COLOURS}
    carved = {k for k, s, _ in table if s == "validation"}
    assert carved and all(k.startswith("train/") for k in carved)
    assert data.size("train") + data.size("validation") == 18
