"""`kerasflow data plan | check` and the image-file scan for detection sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import kerasflow
from kerasflow.cli import cli
from kerasflow.errors import DataError
from kerasflow.pipelines.check import check_data
from kerasflow.pipelines.detection_data import prepare_detection
from tests.tasks.detection.helpers import data_config, write_coco, write_png

BOX = [4, 4, 10, 8]  # x, y, w, h inside every 20x40 image below


def _coco(root):
    """Three good images (2 cats, 2 dogs), one truncated PNG, one whose annotated size is wrong."""
    path = write_coco(
        root,
        [
            ("a.png", 20, 40, [(BOX, 1), (BOX, 2)]),
            ("b.png", 20, 40, [(BOX, 1)]),
            ("c.png", 20, 40, [(BOX, 2)]),
            ("broken.png", 20, 40, [(BOX, 1)]),
            ("resized.png", 20, 40, [(BOX, 2)]),
        ],
    )
    broken = root / "broken.png"
    broken.write_bytes(broken.read_bytes()[:60])
    write_png(root / "resized.png", 30, 40)  # the annotation still says 40x20
    return path


def _run(*args):
    return CliRunner().invoke(cli, ["data", *args], catch_exceptions=False)


def test_bad_image_file_stops_the_run_or_is_skipped(tmp_path):
    path = _coco(tmp_path)
    with pytest.raises(DataError, match="truncated PNG") as info:
        prepare_detection(data_config(path))
    assert str(tmp_path / "broken.png") in str(info.value)
    data = prepare_detection(data_config(path, on_bad_image="skip"))
    skipped = dict(data.skipped)
    assert set(skipped) == {str(tmp_path / "broken.png"), "resized.png"}
    assert "is 40x30 but its annotation says 40x20" in skipped["resized.png"]
    assert data.source.keys == ["a.png", "b.png", "c.png"] and data.size("train") == 3


def test_annotated_size_mismatch_is_an_error_naming_both_sizes(tmp_path):
    path = _coco(tmp_path)
    (tmp_path / "broken.png").unlink()
    write_png(tmp_path / "broken.png", 20, 40)
    with pytest.raises(DataError, match=r"resized\.png.*40x30 but its annotation says 40x20"):
        prepare_detection(data_config(path))


def test_check_reports_annotations_files_and_box_counts(tmp_path):
    path = _coco(tmp_path)
    report = check_data(data_config(path), target="boxes")
    assert report.target == "boxes" and not report.ok
    assert {p for p, _ in report.problems} == {str(tmp_path / "broken.png"), "resized.png"}
    assert report.num_examples == 3
    assert report.class_counts == {"cat": 2, "dog": 2}  # boxes of the good images
    assert report.sizes == [(40, 20)] * 3


def test_cli_check_and_plan_for_a_detection_source(tmp_path):
    path = _coco(tmp_path)
    config = Path(kerasflow.__file__).parent / "configs" / "shapes_detection.yaml"
    sets = ["--set", f"data.source={path}", "--set", "data.image_size=[32,32]",
            "--set", "data.channels=3"]  # fmt: skip
    bad = _run("check", str(config), *sets)
    assert bad.exit_code == 2
    assert f"{tmp_path / 'broken.png'}: truncated PNG" in bad.output
    assert "classes (2): cat: 2, dog: 2" in bad.output
    sets += ["--set", "data.on_bad_image=skip", "--set", "data.split.train=1.0",
             "--set", "data.split.validation=0.0", "--set", "data.split.test=0.0"]  # fmt: skip
    plan = _run("plan", str(config), *sets)
    assert plan.exit_code == 0, plan.output
    train = plan.output.split("validation (")[0]
    assert train.startswith("train (3 examples)")
    assert "3 files of" in train and "(4 boxes)" in train
    stages = [line.split()[1] for line in train.splitlines()[1:] if line.strip()]
    assert stages == ["read", "decode", "deterministic", "cache", "shuffle", "augment",
                      "normalize", "batch", "prefetch"]  # fmt: skip
    assert "letterbox pad to (32, 32)" in train and "crop_scale (0.75, 1.25)" in train
    assert "horizontal_flip; vertical_flip; brightness 0.1; contrast 0.1" in train
    assert "boxes padded to 8" in train
    assert "validation (0 examples): empty" in plan.output
