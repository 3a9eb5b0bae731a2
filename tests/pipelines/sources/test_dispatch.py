"""The dispatch: which reader a ``data.source`` goes to, and the ``target`` argument."""

from __future__ import annotations

import numpy as np
import pytest

from kerasflow.errors import DataError
from kerasflow.pipelines import from_arrays, prepare
from kerasflow.pipelines.sources import describe_source, load_source
from tests.pipelines.helpers import data_config


def test_unknown_source_message(tmp_path):
    with pytest.raises(DataError, match="not a known source"):
        load_source(data_config(source=str(tmp_path / "nope")))


def test_describe_source(tmp_path, class_folder, seg_folder):
    assert describe_source("digits") == "digits"
    assert describe_source("tfds:mnist:3.0.1") == "tfds"
    assert describe_source("synthetic:shapes_multilabel") == "synthetic"
    assert describe_source("a/b.npz") == "npz"
    assert describe_source("m.JSONL") == "manifest"
    assert describe_source("x-00001-of-00004.tfrecord") == "tfrecord"
    assert describe_source(str(class_folder)) == "folder"
    assert describe_source(str(seg_folder)) == "segmentation"
    assert describe_source(str(tmp_path / "nope")) == "unknown"


@pytest.mark.parametrize("target", ["boxes", "classification", "multilabel"])
def test_target_argument_must_be_a_target_kind(target):
    with pytest.raises(
        ValueError, match=f"target must be None or one of class, mask, multi_hot.*{target}"
    ):
        load_source(data_config(), target=target)


def test_given_source_is_checked_against_the_target():
    src = from_arrays(np.zeros((4, 5, 5), np.uint8), [0, 1, 0, 1], name="arr")
    cfg = data_config(image_size=[5, 5])
    assert prepare(cfg, source=src, target="class").target == "class"
    with pytest.raises(DataError, match="'arr' has one label per image"):
        prepare(cfg, source=src, target="multi_hot")


def test_unknown_synthetic_source(tmp_path):
    with pytest.raises(DataError, match="shapes_detection is read with experiment.task: detection"):
        load_source(data_config(source="synthetic:shapes_detection", root=str(tmp_path)))
