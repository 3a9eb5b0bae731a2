"""File sources: class folders, CSV/JSONL manifests (one label or a set of labels), image/mask pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import prepare
from kerasflow.pipelines.check import check_data
from kerasflow.pipelines.sources import load_source
from tests.pipelines.helpers import (
    ALL_TRAIN,
    COLOURS,
    data_config,
    examples,
    gradient_image,
    save,
)

# path, labels: a PNG with two labels, a JPEG with none, a PNG with one, a JPEG with all three.
TAGGED = [
    ("imgs/a.png", ["cat", "dog"]),
    ("imgs/b.jpg", []),
    ("imgs/c.png", ["dog"]),
    ("imgs/sub/d.jpg", ["owl", "cat", "dog"]),
]
TAG_MATRIX = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 0], [1, 1, 1]], np.float32)  # cat, dog, owl


def _tagged_images(root):
    for i, (rel, _) in enumerate(TAGGED):
        save(
            gradient_image(8, 8, i), root / rel, **({"quality": 95} if rel.endswith(".jpg") else {})
        )


def _write_manifests(root):
    _tagged_images(root)
    csv_rows = [f"{rel},{'|'.join(labels)}" for rel, labels in TAGGED]
    csv_rows[3] = "imgs/sub/d.jpg, owl | cat|dog"  # spaces around names are ignored
    (root / "m.csv").write_text("path,labels\n" + "\n".join(csv_rows) + "\n")
    objs = [{"path": rel, "labels": labels} for rel, labels in TAGGED]
    objs[2]["labels"] = "dog"  # a "|"-separated string works too
    objs[3]["labels"] = "owl|cat|dog"
    (root / "m.jsonl").write_text("\n".join(json.dumps(o) for o in objs) + "\n")


def test_folder_discovers_sorted_classes_and_pixels(class_folder):
    cfg = data_config(source=str(class_folder), image_size=[6, 5], channels=3, split=ALL_TRAIN)
    data = prepare(cfg)
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.size("train") == 12
    for image, label in examples(data):
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
        image, label = examples(data)[0]
        assert label == 1
        np.testing.assert_allclose(image, np.asarray(tf.io.decode_png(img_a.read_bytes())))


def test_manifest_label_outside_class_names(tmp_path):
    save(gradient_image(8, 8), tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("a.png,zebra\n")
    cfg = data_config(source=str(tmp_path / "m.csv"), class_names=["ant"])
    with pytest.raises(DataError, match=r"line 1.*'zebra'.*a\.png"):
        load_source(cfg)


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_multi_label_manifest(tmp_path, name):
    _write_manifests(tmp_path)
    cfg = data_config(source=str(tmp_path / name), image_size=[8, 8], channels=3, split=ALL_TRAIN)
    data = prepare(cfg, target="multi_hot")
    assert data.target == "multi_hot" and data.class_names == ["cat", "dog", "owl"]
    assert data.num_classes == 3
    # keys sort as the files do: imgs/a.png, imgs/b.jpg, imgs/c.png, imgs/sub/d.jpg
    np.testing.assert_array_equal(data.labels("train"), TAG_MATRIX)
    got = examples(data)
    np.testing.assert_array_equal(np.stack([t for _, t in got]), TAG_MATRIX)
    want = np.asarray(tf.io.decode_png((tmp_path / "imgs/a.png").read_bytes()))
    np.testing.assert_array_equal(got[0][0], want)
    assert data.split_table() == [
        ("imgs/a.png", "train", "cat|dog"), ("imgs/b.jpg", "train", ""),
        ("imgs/c.png", "train", "dog"), ("imgs/sub/d.jpg", "train", "cat|dog|owl"),
    ]  # fmt: skip


def test_multi_label_manifest_class_names_order_and_unknown_name(tmp_path):
    _write_manifests(tmp_path)
    cfg = data_config(source=str(tmp_path / "m.csv"), class_names=["owl", "dog", "cat", "fox"])
    src = load_source(cfg, target="multi_hot")
    assert src.class_names == ["owl", "dog", "cat", "fox"]
    np.testing.assert_array_equal(src.labels[0], [0, 1, 1, 0])  # a.png: cat, dog
    np.testing.assert_array_equal(src.labels[1], [0, 0, 0, 0])  # b.jpg: an empty cell
    bad = cfg.model_copy(update={"class_names": ["cat", "dog"]})
    with pytest.raises(DataError, match=r"m\.csv line 5: label 'owl' of imgs/sub/d\.jpg"):
        load_source(bad, target="multi_hot")
    jsonl = bad.model_copy(update={"source": str(tmp_path / "m.jsonl")})
    with pytest.raises(DataError, match=r"m\.jsonl line 4: label 'owl'"):
        load_source(jsonl, target="multi_hot")


def test_jsonl_manifest_mixing_label_and_labels(tmp_path):
    _tagged_images(tmp_path)
    lines = ['{"path": "imgs/a.png", "labels": ["cat"]}', '{"path": "imgs/c.png", "label": "dog"}']
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    with pytest.raises(
        DataError, match=r'line 2 has "label" but the lines before it have "labels"'
    ):
        load_source(data_config(source=str(tmp_path / "m.jsonl")))
    (tmp_path / "m.jsonl").write_text('{"path": "imgs/a.png", "labels": {"cat": 1}}')
    with pytest.raises(DataError, match=r'line 1: "labels" must be a list of names'):
        load_source(data_config(source=str(tmp_path / "m.jsonl")))


def test_target_mismatches_say_what_to_do(tmp_path, class_folder, seg_folder):
    with pytest.raises(DataError, match=r"one label per image.*manifest with a `labels` column"):
        load_source(data_config(source=str(class_folder)), target="multi_hot")
    _write_manifests(tmp_path)
    with pytest.raises(DataError, match=r"m\.csv is multi-label.*experiment\.task: multilabel"):
        load_source(data_config(source=str(tmp_path / "m.csv")), target="class")
    (tmp_path / "one.csv").write_text("path,label\nimgs/a.png,cat\n")
    with pytest.raises(DataError, match=r"`label` column gives one label.*write a `labels` column"):
        load_source(data_config(source=str(tmp_path / "one.csv")), target="multi_hot")
    with pytest.raises(DataError, match="holds segmentation masks.*experiment.task: segmentation"):
        load_source(data_config(source=str(seg_folder)), target="class")
    with pytest.raises(DataError, match="has no segmentation masks"):
        load_source(data_config(source=str(class_folder)), target="mask")


def test_check_counts_images_per_label(tmp_path):
    _write_manifests(tmp_path)
    report = check_data(data_config(source=str(tmp_path / "m.jsonl")), target="multi_hot")
    assert report.ok and report.target == "multi_hot" and report.num_examples == 4
    assert report.class_counts == {"cat": 2, "dog": 3, "owl": 1}
    assert "(multi_hot targets), 4 usable examples" in report.to_text()
    wrong = check_data(data_config(source=str(tmp_path / "m.jsonl")), target="class")
    assert not wrong.ok and "multi-label" in wrong.errors[0]


def test_segmentation_pairs(seg_folder):
    cfg = data_config(source=str(seg_folder), image_size=[16, 16], channels=3, split=ALL_TRAIN,
                      class_names=["bg", "left", "box"])  # fmt: skip
    data = prepare(cfg)
    assert data.target == "mask" and data.num_classes == 3
    image, mask = examples(data)[0]
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


def test_one_class_folder_is_refused(tmp_path):
    for i in range(3):
        save(gradient_image(8, 8, i), tmp_path / "only" / "cat" / f"{i}.png")
    with pytest.raises(DataError) as err:
        load_source(data_config(source=str(tmp_path / "only")))
    message = str(err.value)
    assert str(tmp_path / "only") in message and "['cat']" in message
    assert "at least two" in message and "3 usable images" in message


def test_one_class_manifest_is_refused_even_with_two_class_names(tmp_path):
    for i in range(3):
        save(gradient_image(8, 8, i), tmp_path / "imgs" / f"{i}.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"imgs/{i}.png,dog\n" for i in range(3)))
    with pytest.raises(DataError, match=r"Manifest .*m\.csv has images of 1 class \(\['dog'\]\)"):
        load_source(data_config(source=str(manifest), class_names=["cat", "dog"]))
    # A multi-label manifest with one label is a yes/no question, which is fine.
    manifest.write_text("path,labels\n" + "".join(f"imgs/{i}.png,dog\n" for i in range(3)))
    assert load_source(data_config(source=str(manifest))).class_names == ["dog"]
