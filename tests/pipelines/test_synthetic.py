"""The offline shape sets: deterministic files, and labels that match what is drawn."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from kerasflow.pipelines import synthetic
from kerasflow.pipelines.sources import load_coco, load_source
from tests.pipelines.helpers import data_config


def test_shapes_segmentation_is_deterministic(tmp_path):
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


def test_shapes_detection_is_deterministic_and_boxes_are_tight(tmp_path):
    rng = np.random.default_rng(3)
    image, boxes, classes = synthetic.draw_shapes_detection_example(rng, size=64, max_shapes=3)
    assert image.shape == (64, 64, 3) and len(boxes) == len(classes) >= 1
    for (x0, y0, x1, y1), cls in zip(boxes, classes, strict=True):
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        if synthetic.DETECTION_CLASSES[cls] == "square":  # a filled square fills its box exactly
            patch = image[y0:y1, x0:x1].reshape(-1, 3)
            assert (patch == patch[0]).all()
    a = synthetic.write_shapes_detection(tmp_path / "a", num_images=4, size=32, seed=1)
    b = synthetic.write_shapes_detection(tmp_path / "b", num_images=4, size=32, seed=1)
    assert (a / "annotations.json").read_text() == (b / "annotations.json").read_text()
    assert (a / "images" / "0003.png").read_bytes() == (b / "images" / "0003.png").read_bytes()
    src = load_coco(a / "annotations.json")
    assert src.class_names == list(synthetic.DETECTION_CLASSES) and len(src) == 4


def test_shapes_multilabel_is_deterministic(tmp_path):
    a = synthetic.write_shapes_multilabel(tmp_path / "a", num_images=12, size=32, seed=3)
    b = synthetic.write_shapes_multilabel(tmp_path / "b", num_images=12, size=32, seed=3)
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    assert (a / "images/0011.png").read_bytes() == (b / "images/0011.png").read_bytes()
    c = synthetic.write_shapes_multilabel(tmp_path / "c", num_images=12, size=32, seed=4)
    assert (a / "labels.csv").read_bytes() != (c / "labels.csv").read_bytes()
    lines = (a / "labels.csv").read_text().splitlines()
    assert lines[0] == "path,labels" and lines[1].startswith("images/0000.png,")
    image = np.asarray(Image.open(a / "images/0000.png"))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_shapes_multilabel_labels_are_the_shapes_drawn():
    rng = np.random.default_rng(0)
    for size in (32, 48):
        for _ in range(40):
            image, classes = synthetic.draw_shapes_multilabel_example(rng, size, max_shapes=4)
            assert 1 <= len(classes) <= 4
            # shapes are bright (every channel >= 150), the background dark (20..90 + light noise)
            shapes, count = ndimage.label(image.min(axis=-1) >= 150)
            assert count == len(classes)  # apart from each other: one blob per shape
            for blob in ndimage.find_objects(shapes):
                side = max(s.stop - s.start for s in blob)
                assert side >= 2 * (size // 8) + 1  # radius >= 1/8 of the image side


def test_shapes_multilabel_counts_are_plausible(tmp_path):
    out = synthetic.write_shapes_multilabel(tmp_path, num_images=300, size=32)
    rows = [line.split(",")[1] for line in (out / "labels.csv").read_text().splitlines()[1:]]
    labels = [row.split("|") for row in rows]
    assert len(labels) == 300 and all(1 <= len(ls) <= 4 for ls in labels)
    assert {n for ls in labels for n in ls} == set(synthetic.MULTILABEL_CLASSES)
    for name in synthetic.MULTILABEL_CLASSES:  # each shape is in 30-70% of the images
        share = sum(name in ls for ls in labels) / len(labels)
        assert 0.3 < share < 0.7, (name, share)
    sizes = np.bincount([len(ls) for ls in labels], minlength=5)
    assert sizes[1] > 0 and sizes[2] > 0 and sizes[3] > 0  # one, two and three labels all occur


def test_shapes_multilabel_source_is_written_once_and_read_as_a_manifest(tmp_path):
    cfg = data_config(source="synthetic:shapes_multilabel", root=str(tmp_path),
                      image_size=[32, 32], channels=3)  # fmt: skip
    src = load_source(cfg, target="multi_hot")
    assert src.name == "synthetic:shapes_multilabel" and src.target == "multi_hot"
    assert len(src) == synthetic.MULTILABEL_DEFAULTS["num_images"]
    assert src.class_names == sorted(synthetic.MULTILABEL_CLASSES)
    assert src.keys[0] == "images/0000.png" and src.labels.shape == (len(src), 4)
    assert src.labels.sum(axis=1).min() >= 1
    labels_csv = tmp_path / "synthetic_shapes_multilabel" / "labels.csv"
    before = labels_csv.stat().st_mtime_ns
    again = load_source(cfg)
    assert labels_csv.stat().st_mtime_ns == before  # reused: same parameters
    np.testing.assert_array_equal(again.labels, src.labels)
