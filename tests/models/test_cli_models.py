"""``kerasflow models list``."""

from __future__ import annotations

from click.testing import CliRunner

from kerasflow.cli import cli


def test_models_list_prints_counts_from_the_graph():
    result = CliRunner().invoke(cli, ["models", "list", "--name", "simple_cnn"])
    assert result.exit_code == 0, result.output
    header, row = result.output.strip().splitlines()
    assert header.split() == ["name", "kind", "params", "MACs"]
    # simple_cnn at 224x224x3 / 1000 classes, counted by kerasflow.models.table.
    assert row.split() == ["simple_cnn", "classification", "203,464", "1.20G"]


def test_models_list_without_counts_lists_every_segmentation_name():
    result = CliRunner().invoke(cli, ["models", "list", "--task", "segmentation", "--no-counts"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.strip().splitlines()[1:]] == [
        "deeplab",
        "unet",
    ]


def test_models_list_unknown_name_exits_2():
    result = CliRunner().invoke(cli, ["models", "list", "--name", "resnt50"])
    assert result.exit_code == 2
    assert "Did you mean resnet50" in result.output
