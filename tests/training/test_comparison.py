"""Comparing runs read back from MLflow: table values, files, errors and the CLI."""

from __future__ import annotations

import csv
import json
import struct

import pytest
from mlflow.tracking import MlflowClient

from kerasflow.errors import TrackingError
from kerasflow.training.comparison import compare_runs

LOGGED = {
    "a": {"test_accuracy": 0.91, "test_macro_f1": 0.90, "test_loss": 0.30},
    "b": {"test_accuracy": 0.95, "test_macro_f1": 0.94, "test_loss": 0.35},
    "c": {"test_accuracy": 0.88, "test_loss": 0.25},  # no F1 logged
}


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        data = f.read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def logged_runs(tracking_uri):
    """Three finished runs with known metrics in their own experiment (no training needed)."""
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("compare-test")
    exp_id = exp.experiment_id if exp else client.create_experiment("compare-test")
    ids = {}
    for name, metrics in LOGGED.items():
        run = client.create_run(exp_id, run_name=f"run-{name}")
        client.log_param(run.info.run_id, "model.name", f"model_{name}")
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
        ids[name] = run.info.run_id
    return ids


def test_compare_by_run_ids_reads_logged_values(logged_runs, tracking_uri, tmp_path):
    ids = [logged_runs["a"], logged_runs["b"]]
    result = compare_runs(ids, ["test_accuracy", "test_loss"], uri=tracking_uri, out_dir=tmp_path)
    assert [r.run_id for r in result.runs] == ids
    assert result.values == [[0.91, 0.30], [0.95, 0.35]]
    assert result.best("test_accuracy") == logged_runs["b"]
    assert result.best("test_loss") == logged_runs["a"]  # lower is better for a loss
    with open(tmp_path / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["test_accuracy"]) for r in rows] == [0.91, 0.95]
    assert rows[0]["model.name"] == "model_a" and rows[1]["run_name"] == "run-b"
    assert json.loads((tmp_path / "comparison.json").read_text())[1]["test_loss"] == 0.35
    assert png_size(tmp_path / "comparison.png") == (600, 450)
    text = result.to_text()
    assert "0.9500*" in text and "0.3000*" in text and "model_b" in text


def test_compare_experiment_defaults_and_missing_values(logged_runs, tracking_uri):
    result = compare_runs(["compare-test"], uri=tracking_uri)
    assert {r.run_id for r in result.runs} == set(logged_runs.values())
    # Default metrics: the defaults that any run has, in the default order.
    assert result.metrics == ["test_accuracy", "test_macro_f1", "test_loss"]
    by_id = {r.run_id: v for r, v in zip(result.runs, result.values, strict=True)}
    assert by_id[logged_runs["c"]] == [0.88, None, 0.25]
    assert "| run | model | test_accuracy" in result.to_markdown()


def test_compare_errors(logged_runs, tracking_uri):
    with pytest.raises(TrackingError, match="neither a run id nor an experiment"):
        compare_runs(["no-such-thing"], uri=tracking_uri)
    with pytest.raises(TrackingError, match="test_top9"):
        compare_runs([logged_runs["a"]], ["test_top9"], uri=tracking_uri)


def test_cli_compare_with_a_trained_run(digits_result, logged_runs, tracking_uri, tmp_path):
    from click.testing import CliRunner

    from kerasflow.cli import cli

    out = tmp_path / "cmp"
    args = ["compare", digits_result.run_id, logged_runs["b"], "--uri", tracking_uri]
    res = CliRunner().invoke(cli, [*args, "--metric", "test_accuracy", "--out", str(out)])
    assert res.exit_code == 0, res.output
    acc = digits_result.test_metrics["test_accuracy"]
    assert f"{acc:.4f}" in res.output
    best = digits_result.run_id if acc > 0.95 else logged_runs["b"]
    assert f"best test_accuracy: {best}" in res.output
    assert (out / "comparison.png").is_file() and (out / "comparison.csv").is_file()
    res = CliRunner().invoke(cli, ["compare", "nope-exp", "--uri", tracking_uri])
    assert res.exit_code == 2 and "neither a run id" in res.output
