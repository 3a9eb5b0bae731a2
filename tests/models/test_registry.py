"""The registry: names, lazy import, clear errors, and the zoo table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kerasflow import models
from kerasflow.errors import ModelError
from kerasflow.models.table import format_count, model_row, model_table

EXPECTED = {
    "simple_cnn",
    "alexnet",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "nin",
    "googlenet",
    "mobilenet_v1",
    "mobilenet_v2",
    "densenet121",
    "densenet169",
    "densenet201",
    "unet",
    "deeplab",
    "keras_app",
    *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
    *(f"resnet{d}_v2" for d in (18, 34, 50, 101, 152)),
    *(f"se_resnet{d}" for d in (18, 34, 50, 101, 152)),
}


def test_names_cover_the_issue():
    zoo = models.names("classification") + models.names("segmentation")
    assert set(zoo) == EXPECTED
    assert set(models.names()) >= EXPECTED
    assert models.names(kind="segmentation") == ["deeplab", "unet"]
    assert models.names() == sorted(models.names())


def test_names_do_not_import_tensorflow():
    code = (
        "import sys; from kerasflow import models; models.names(); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_name_suggests_close_match():
    with pytest.raises(ModelError, match="Did you mean resnet50"):
        models.build("resnet05", (32, 32, 3), 10)


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("resnet18", {"colour": "red"}, "unexpected keyword argument 'colour'"),
        ("resnet18", {"output_stride": 4}, "Received: output_stride=4"),
        ("vgg16", {"pooling": "median"}, "Received: pooling='median'"),
        ("mobilenet_v2", {"alpha": 0}, "Received: alpha=0"),
        ("unet", {"depth": 3}, "divisible by 2\\*\\*depth=8"),
        ("alexnet", {}, "at least 63"),
        ("deeplab", {"backbone": "unet"}, "classification model name"),
        ("resnet18", {"weight_decay": -1}, "Received: weight_decay=-1"),
    ],
)
def test_bad_params_raise_model_error_with_received(name, params, match):
    shape = (36, 36, 3) if name == "unet" else (32, 32, 3)
    with pytest.raises(ModelError, match=match) as info:
        models.build(name, shape, 10, **params)
    assert "Received:" in str(info.value)


def test_model_row_counts_from_the_graph():
    row = model_row("simple_cnn", (8, 8, 1), 10, width=2, depth=1, dense_units=0)
    # params: conv 9*1*2 + bn 4*2 + conv 9*2*2 + bn 4*2 + dense 2*10+10 = 100
    # MACs: conv 8*8*2*9*1 + conv 8*8*2*9*2 + dense 2*10 = 3476
    assert row == {"name": "simple_cnn", "kind": "classification", "params": 100, "macs": 3476}


@pytest.mark.slow
def test_table_at_imagenet_size():
    rows = {r["name"]: r for r in model_table(["resnet50", "mobilenet_v2"])}
    assert rows["resnet50"]["params"] == 25_636_712
    assert rows["mobilenet_v2"]["macs"] == 300_774_272


def test_format_count():
    assert format_count(25_636_712) == "25.64M"
    assert format_count(4_089_184_256) == "4.09G"
    assert format_count(1_500) == "1.50K"
    assert format_count(12) == "12"
