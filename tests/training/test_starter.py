"""`kerasflow init`: one scan of a folder, a commented config that trains as written."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

import kerasflow
from kerasflow.cli import cli
from kerasflow.training.starter import (
    _experiment_name,
    _imbalance,
    pick_batch_size,
    pick_channels,
    pick_epochs,
    pick_model,
    pick_side,
)
from tests.conftest import overrides_for
from tests.training.digits_folder import write_digits_folder


def test_picks_follow_the_data():
    assert pick_side([(32, 32)] * 10, 1800) == 32
    assert pick_side([(500, 375)] * 10, 1800) == 64  # a small set stays small
    assert pick_side([(500, 375)] * 10, 30_000) == 128
    assert pick_side([(500, 375)] * 10, 100_000) == 224
    assert pick_channels({"L": 5}) == 1 and pick_channels({"L": 5, "RGB": 1}) == 3
    assert pick_batch_size(1260) == 32 and pick_batch_size(100_000) == 128
    assert pick_epochs(1260) == (15, 5)
    assert pick_model("classification", 1800, 32)[0] == "simple_cnn"
    assert pick_model("classification", 50_000, 128)[0] == "resnet18"
    assert pick_model("segmentation", 500, 64)[0] == "unet"


def test_experiment_name_from_the_source(tmp_path):
    (tmp_path / "flowers").mkdir()
    (tmp_path / "flowers" / "list.csv").write_text("path,label\n")
    assert _experiment_name("tfds:coco/2017:1.1.0") == "coco"
    assert _experiment_name(str(tmp_path / "flowers")) == "flowers"
    assert _experiment_name(str(tmp_path / "flowers" / "list.csv")) == "flowers"


def test_init_on_an_imbalanced_manifest_warns(tmp_path):
    folder = write_digits_folder(tmp_path / "set", size=24, classes=[0, 1, 2], per_class=40)
    rows = [
        f"{p.relative_to(folder)},{p.parent.name}"
        for p in sorted(folder.rglob("*.png"))
        if p.parent.name != "2" or int(p.stem) < 8
    ]
    (folder / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "c.yaml"
    result = CliRunner().invoke(cli, ["init", str(folder / "list.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "'0' has 40 examples, '2' 8 (5.0x)" in result.output
    values = yaml.safe_load(out.read_text())
    assert values["experiment"]["name"] == "set"
    assert values["data"]["on_bad_image"] == "error"  # nothing bad found
    assert values["data"]["image_size"] == [16, 16] and values["data"]["channels"] == 1
    assert "WARNING: classes are imbalanced" in out.read_text()


def test_imbalance_is_named():
    text = _imbalance({"cat": 300, "dog": 40, "fox": 100})
    assert "'cat' has 300" in text and "'dog' 40" in text and "7.5x" in text
    assert _imbalance({"cat": 100, "dog": 60}) is None


def test_init_refuses_to_overwrite(tmp_path):
    out = tmp_path / "config.yaml"
    out.write_text("x: 1\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output
    assert out.read_text() == "x: 1\n"


@pytest.mark.slow
def test_init_on_a_folder_with_bad_files_writes_a_config_that_trains(
    tmp_path, store_dir, tracking_uri
):
    folder = write_digits_folder(tmp_path / "digits", size=32)
    good = (folder / "7" / "0000.png").read_bytes()
    bad = {
        folder / "3" / "broken.png": b"\x89PNG\r\n\x1a\n" + b"not a png" * 10,
        folder / "5" / "empty.jpg": b"",
        folder / "7" / "cut.png": good[: len(good) // 2],
    }
    for path, data in bad.items():
        path.write_bytes(data)
    out = tmp_path / "config.yaml"
    result = CliRunner().invoke(cli, ["init", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for path in bad:
        assert str(path) in text  # each bad file named in the config's comments
    values = yaml.safe_load(text)
    assert values["data"]["on_bad_image"] == "skip"
    assert values["data"]["channels"] == 1 and values["data"]["image_size"] == [32, 32]
    assert values["model"]["name"] == "simple_cnn"
    assert "1797 usable images in 10 classes" in text

    cfg = kerasflow.load_config(
        out, overrides_for(store_dir, tracking_uri, "init-digits", "train.verbose=0")
    )
    result = kerasflow.train(cfg)
    assert result.test_metrics["test_accuracy"] >= 0.95, result.test_metrics
