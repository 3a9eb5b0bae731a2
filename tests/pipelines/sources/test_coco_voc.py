"""Detection sources: COCO, VOC and TFDS (mock data); bad annotations and options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kerasflow.errors import DataError
from kerasflow.pipelines.detection_data import prepare_detection
from kerasflow.pipelines.sources import load_coco, load_voc
from tests.tasks.detection.helpers import data_config, write_coco, write_png


def test_coco_boxes_are_normalised_yxyx_with_class_ids(tmp_path):
    path = write_coco(
        tmp_path,
        [
            ("a.png", 40, 80, [([8, 4, 16, 20], 2), ([0, 0, 80, 40], 1)]),
            ("sub/b.png", 20, 20, []),
        ],
    )
    src = load_coco(path)
    assert src.class_names == ["cat", "dog"]
    assert src.keys == ["a.png", "sub/b.png"]
    np.testing.assert_allclose(src.boxes[0], [[0.1, 0.1, 0.6, 0.3], [0, 0, 1, 1]], atol=1e-6)
    assert src.classes[0].tolist() == [1, 0]
    assert src.boxes[1].shape == (0, 4)
    # data.class_names reorders the ids by name.
    src = load_coco(path, class_names=["dog", "cat"])
    assert src.classes[0].tolist() == [0, 1]


def test_coco_pipeline_gives_padded_boxes_on_the_letterboxed_image(tmp_path):
    write_png(tmp_path / "a.png", 40, 80, [(4, 8, 24, 24)])
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 80}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [8, 4, 16, 20], "category_id": 1}],
        "categories": [{"id": 1, "name": "block"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    data = prepare_detection(data_config(tmp_path / "ann.json"))
    images, targets = next(iter(data.dataset("train", training=False)))
    assert images.shape == (1, 64, 64, 3)
    assert targets["boxes"].shape == (1, 32, 4) and targets["classes"].numpy()[0, :2].tolist() == [
        0,
        -1,
    ]
    # 80 x 40 -> 64 x 32 at top 16: the block rows 4..24 -> 16 + 3.2 .. 16 + 19.2 pixels.
    np.testing.assert_allclose(
        targets["boxes"].numpy()[0, 0] * 64, [19.2, 6.4, 35.2, 19.2], atol=1e-4
    )
    pixels = images.numpy()[0]
    assert pixels[27, 12].min() > 0.99 and pixels[8, 12].max() == 0


@pytest.mark.parametrize(
    "bbox, cat, message",
    [
        ([10, 10, -5, 8], 1, "negative width"),
        ([70, 10, 30, 8], 1, "outside"),
        ([10, 10, 5, 8], 9, "unknown class"),
    ],
)
def test_coco_bad_boxes_name_the_file_and_value_or_are_skipped(tmp_path, bbox, cat, message):
    path = write_coco(tmp_path, [("a.png", 40, 80, [(bbox, cat)]), ("b.png", 40, 80, [])])
    with pytest.raises(DataError, match=message) as info:
        load_coco(path)
    assert "a.png" in str(info.value) and "on_bad_image: skip" in str(info.value)
    src = load_coco(path, on_bad="skip")
    assert src.keys == ["b.png"]
    assert src.skipped[0][0] == "a.png" and message in src.skipped[0][1]


def test_coco_missing_image_file(tmp_path):
    path = write_coco(tmp_path, [("a.png", 40, 80, [])])
    (tmp_path / "a.png").unlink()
    with pytest.raises(DataError, match="a.png.*missing"):
        load_coco(path)
    cfg = data_config(path, on_bad_image="skip")
    with pytest.raises(DataError, match="no usable images \\(1 skipped\\)"):
        prepare_detection(cfg)


VOC_XML = """<annotation><filename>{name}</filename>
<size><width>50</width><height>100</height><depth>3</depth></size>
<object><name>{cls}</name><difficult>0</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>11</ymin><xmax>30</xmax><ymax>60</ymax></bndbox></object>
<object><name>dog</name><difficult>1</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>"""


def _voc(tmp_path, cls="person", xmin=11):
    (tmp_path / "Annotations").mkdir()
    write_png(tmp_path / "JPEGImages" / "x.png", 100, 50)
    (tmp_path / "Annotations" / "x.xml").write_text(
        VOC_XML.format(name="x.png", cls=cls, xmin=xmin)
    )
    return tmp_path


def test_voc_folder(tmp_path):
    src = load_voc(_voc(tmp_path))
    assert src.class_names == ["dog", "person"]
    # 1-based inclusive pixels: xmin 11 -> edge 10, ymin 11 -> 10.
    np.testing.assert_allclose(src.boxes[0], [[0.1, 0.2, 0.6, 0.6]], atol=1e-6)
    assert src.classes[0].tolist() == [1]
    assert src.ignored["difficult objects"] == 1


def test_voc_unknown_class_and_inverted_box(tmp_path):
    folder = _voc(tmp_path, cls="horse")
    with pytest.raises(DataError, match="x.xml.*unknown class 'horse'"):
        load_voc(folder, class_names=["dog", "person"])
    (folder / "Annotations" / "x.xml").write_text(VOC_XML.format(name="x.png", cls="dog", xmin=40))
    with pytest.raises(DataError, match="negative or zero width"):
        load_voc(folder)
    assert load_voc(folder, on_bad="skip").skipped[0][0] == "x.xml"


def test_tfds_detection_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = data_config(
        "tfds:voc/2007",
        split={
            "mode": "source",
            "source_names": {"train": "train", "validation": "validation", "test": "test"},
        },
    )
    with tfds.testing.mock_data(num_examples=3):
        data = prepare_detection(cfg)
        assert data.class_names[:2] == ["aeroplane", "bicycle"] and data.num_classes == 20
        assert data.size("train") == 3
        images, targets = next(iter(data.dataset("train")))
    assert images.shape == (3, 64, 64, 3)
    boxes, classes = targets["boxes"].numpy(), targets["classes"].numpy()
    assert boxes.shape == (3, 32, 4) and classes.shape == (3, 32)
    valid = classes >= 0
    assert (classes[valid] < 20).all() and (boxes >= 0).all() and (boxes <= 1).all()


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"augment": {"rotation": 0.1, "mixup": 0.2}}, "rotation, mixup cannot move boxes"),
        ({"center_crop": 0.8}, "center_crop"),
        ({"resize": "crop"}, "resize: crop"),
    ],
)
def test_options_that_would_move_pixels_without_boxes_are_rejected(tmp_path, extra, message):
    path = write_coco(tmp_path, [("a.png", 40, 80, [])])
    with pytest.raises(DataError, match=message):
        prepare_detection(data_config(path, **extra))
