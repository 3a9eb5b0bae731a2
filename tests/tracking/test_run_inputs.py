"""A run's datasets, system metrics and registered-version notes, read back from a real MLflow store."""

from __future__ import annotations

import json
import time

from mlflow.tracking import MlflowClient

from kerasflow.config import TrackingConfig, load_config
from kerasflow.tracking import start_tracker
from kerasflow.tracking.datasets import DIGEST_TAG, split_datasets, split_digest
from kerasflow.tracking.system_metrics import start_system_metrics, stop_system_metrics


def test_the_digits_run_logs_its_three_splits_as_datasets(digits_result, tracking_uri):
    run = MlflowClient(tracking_uri).get_run(digits_result.run_id)
    inputs = {
        dict((t.key, t.value) for t in di.tags)["mlflow.data.context"]: di.dataset
        for di in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "validation", "test"}
    sizes = {"training": "train", "validation": "validation", "test": "test"}
    split_sizes = json.loads(
        MlflowClient(tracking_uri).get_run(digits_result.run_id).data.params["data.size.train"]
    )
    for context, ds in inputs.items():
        profile = json.loads(ds.profile)
        assert ds.name == f"digits:{sizes[context]}" and len(ds.digest) == 12
        assert ds.source_type == "code" and "digits" in ds.source
        assert sum(profile["counts"].values()) == profile["num_examples"]
        schema = json.loads(ds.schema)["mlflow_tensorspec"]
        assert json.loads(schema["features"])[0]["tensor-spec"] == {
            "dtype": "uint8",
            "shape": [-1, 16, 16, 1],
        }
    assert json.loads(inputs["training"].profile)["num_examples"] == split_sizes
    assert len({ds.digest for ds in inputs.values()}) == 3  # each split told apart
    assert len(run.data.tags[DIGEST_TAG]) == 12


def test_the_digits_run_has_system_metrics(digits_result, tracking_uri):
    metrics = MlflowClient(tracking_uri).get_run(digits_result.run_id).data.metrics
    assert 0 < metrics["system/cpu_utilization_percentage"] <= 100 * 64
    assert metrics["system/system_memory_usage_megabytes"] > 0


def test_the_registered_version_describes_itself(digits_result, tracking_uri):
    client = MlflowClient(tracking_uri)
    reg = digits_result.registered
    mv = client.get_model_version(reg.name, reg.version)
    accuracy = digits_result.test_metrics["test_accuracy"]
    assert f"| test_accuracy | {accuracy:.4f} |" in mv.description
    digest = client.get_run(digits_result.run_id).data.tags[DIGEST_TAG]
    assert (
        digest in mv.description and f"runs:/{digits_result.run_id}/config.yaml" in mv.description
    )
    assert mv.tags["task"] == "classification" and mv.tags["data_digest"] == digest
    assert mv.tags["test_accuracy"] == f"{accuracy:.4f}"
    found = client.search_model_versions(f"name = '{reg.name}' and tags.data_digest = '{digest}'")
    assert str(reg.version) in {str(v.version) for v in found}


def test_digest_follows_the_data(tmp_path):
    rows = [("a.png", "train", 0), ("b.png", "train", 1)]
    assert split_digest(rows, "x") == split_digest(list(reversed(rows)), "x")
    assert split_digest(rows, "x") != split_digest([*rows, ("c.png", "train", 1)], "x")
    assert split_digest(rows, "x") != split_digest([("a.png", "train", 1), rows[1]], "x")


def test_a_folder_source_is_a_local_dataset(tmp_path):
    from kerasflow import tasks
    from tests.training.digits_folder import write_digits_folder

    folder = write_digits_folder(tmp_path / "d", size=8, classes=[0, 1], per_class=10)
    cfg = load_config(None, [f"data.source={folder}", "data.image_size=[8, 8]"])
    prepared = tasks.get("classification").prepare(cfg.data, 42)
    datasets = split_datasets(cfg.data, prepared)
    assert datasets["train"].source._get_source_type() == "local"
    assert str(folder) in datasets["train"].source.to_json()
    assert sum(datasets[s].profile["num_examples"] for s in datasets) == 20


def test_system_metrics_switch(tracking_uri):
    uri = tracking_uri
    tracker = start_tracker("sysmetrics", uri=uri)
    try:
        assert start_system_metrics(tracker, TrackingConfig(system_metrics=False)) is None
        monitor = start_system_metrics(
            tracker, TrackingConfig(system_metrics=True, system_metrics_interval_s=0.5)
        )
        assert monitor is not None
        time.sleep(2.0)
        stop_system_metrics(monitor)
    finally:
        tracker.end("FINISHED")
    metrics = MlflowClient(uri).get_run(tracker.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
