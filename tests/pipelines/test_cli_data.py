"""`kerasflow data plan | preview | check` through the click command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

cli_module = pytest.importorskip("kerasflow.cli")


def _run(*args):
    return CliRunner().invoke(cli_module.cli, ["data", *args], catch_exceptions=False)


def test_plan_prints_each_split():
    result = _run("plan", "--set", "data.augment.horizontal_flip=true")
    assert result.exit_code == 0, result.output
    out = result.output
    for split in ("train (", "validation (", "test ("):
        assert split in out
    train = out.split("validation (")[0]
    assert train.index("cache") < train.index("shuffle") < train.index("horizontal_flip")
    assert train.index("horizontal_flip") < train.index("batch ") < train.index("prefetch")


def test_preview_writes_grid_with_masks(tmp_path, seg_folder):
    out = tmp_path / "grid.png"
    config = Path(cli_module.__file__).parent / "configs" / "segmentation_shapes.yaml"
    result = _run("preview", str(config), "--out", str(out), "--count", "4",
                  "--set", f"data.source={seg_folder}", "--set", "data.image_size=[16,16]",
                  "--set", "data.split.train=1.0", "--set", "data.split.test=0.0",
                  "--set", "data.split.validation=0.0")  # fmt: skip
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(out))
    assert grid.ndim == 3 and grid.shape[2] == 3 and min(grid.shape[:2]) >= 96
    # mask overlay colours (class 1 red-ish, class 2 green-ish) appear in the grid
    assert (grid[..., 0].astype(int) - grid[..., 1] > 60).any()


def test_check_exit_codes(tmp_path, class_folder):
    ok = _run("check", "--set", f"data.source={class_folder}", "--set", "data.channels=3")
    assert ok.exit_code == 0 and "OK" in ok.output and "cat: 4" in ok.output
    for name in ("a", "b"):  # two classes: a one-class folder is refused for that alone
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "good.png")
    (tmp_path / "a" / "bad.jpg").write_bytes(b"")
    bad = _run("check", "--set", f"data.source={tmp_path}")
    assert bad.exit_code == 2 and f"{tmp_path / 'a' / 'bad.jpg'}: empty file" in bad.output
