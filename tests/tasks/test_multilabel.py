"""The multilabel task: config `auto` choices, the sigmoid head, thresholds in the contract,
and a run from a user's manifest to a served SavedModel answering real HTTP requests."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from kerasflow import tasks
from kerasflow.config import build_config
from kerasflow.errors import ConfigError

TASK = tasks.get("multilabel")


def _arrays_data(n=60, k=3, seed=0):
    """Prepared multi-hot data from arrays: label j is on when channel-mean block j is bright."""
    from kerasflow import pipelines

    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < 0.4).astype(np.uint8)
    images = np.zeros((n, 8, 8, 1), np.uint8)
    for j in range(k):
        images[labels[:, j] == 1, :, j * 2 : j * 2 + 2] = 255
    cfg = build_config(
        {
            "experiment": {"task": "multilabel"},
            "data": {"source": "x.npz", "image_size": [8, 8], "channels": 1, "batch_size": 16},
        }
    )
    source = pipelines.from_arrays(images, labels, ["a", "b", "c"], name="tags")
    return cfg, TASK.prepare(cfg.data, 0, source=source), labels


def test_auto_choices_and_explicit_values_are_checked():
    cfg = build_config({"experiment": {"task": "multilabel"}, "data": {"source": "x.csv"}})
    assert TASK.loss_name(cfg.compile) == "binary_crossentropy"
    assert TASK.metric_names(cfg.compile) == ["binary_accuracy", "micro_f1"]
    assert TASK.resolve_monitor("auto", cfg.compile, True) == "val_micro_f1"
    assert TASK.resolve_monitor("auto", cfg.compile, False) == "micro_f1"
    assert TASK.champion_metric(cfg.tracking) == ("test_micro_f1", "max")
    bad = cfg.compile.model_copy(update={"metrics": ["accuracy"]})
    with pytest.raises(ConfigError, match="'accuracy'.*multilabel.*micro_f1"):
        TASK.metric_names(bad)
    with pytest.raises(ConfigError, match="val_accuracy.*multilabel.*val_micro_f1"):
        TASK.resolve_monitor("val_accuracy", cfg.compile, True)


def test_task_model_and_source_must_agree():
    with pytest.raises(ConfigError, match="'unet' is a segmentation model.*multilabel"):
        build_config({"experiment": {"task": "multilabel"}, "model": {"name": "unet"}})
    with pytest.raises(ConfigError, match="cannot read data.source 'digits'"):
        build_config({"experiment": {"task": "multilabel"}})
    with pytest.raises(ConfigError, match="multilabel source but experiment.task is"):
        build_config({"data": {"source": "synthetic:shapes_multilabel"}})


def test_sigmoid_head_thresholds_and_json_predictions():
    import keras

    from kerasflow.training.compile import build_compiled_model

    cfg, prepared, labels = _arrays_data()
    keras.utils.set_random_seed(0)
    model = build_compiled_model(cfg, prepared)
    assert model.layers[-1].get_config()["activation"] == "sigmoid"
    assert model.loss.__class__.__name__ == "BinaryCrossentropy"
    model.fit(prepared.dataset("train").repeat(), steps_per_epoch=20, epochs=4, verbose=0)
    contract = TASK.contract(model, prepared)
    assert (
        contract["class_names"] == ["a", "b", "c"] and contract["thresholds_split"] == "validation"
    )
    assert len(contract["thresholds"]) == 3 and all(0 < t < 1 for t in contract["thresholds"])
    report = TASK.evaluate(model, prepared, "test", contract)
    assert report["num_labels"] == 3 and report["thresholds"] == contract["thresholds"]
    metrics = TASK.scalar_metrics(report)
    assert {"test_micro_f1", "test_map", "test_hamming_loss", "test_ap_a"} <= set(metrics)

    import tensorflow as tf

    probs = tf.constant([[0.9, 0.2, 0.6], [0.1, 0.1, 0.1]])
    outputs = {"probabilities": probs, "predicted": tf.constant([[1, 0, 0], [0, 0, 0]])}
    predictions = TASK.json_predictions(outputs, contract)
    assert predictions[0]["labels"] == ["a"] and predictions[1]["labels"] == []
    assert predictions[0]["probabilities"]["c"] == pytest.approx(0.6)


@pytest.mark.slow
def test_manifest_run_exports_and_serves_label_names_over_http(tmp_path):
    """A user's CSV manifest of PNGs -> kerasflow.train -> export -> `kerasflow serve` -> HTTP."""
    import kerasflow
    from kerasflow.pipelines.synthetic import write_shapes_multilabel
    from tests.serving.conftest import Server, post, server_env

    data = write_shapes_multilabel(tmp_path / "shapes", num_images=600, size=32, seed=3)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = build_config(
        {
            "experiment": {
                "name": "tags",
                "task": "multilabel",
                "work_dir": str(tmp_path / "runs"),
            },
            "data": {"source": str(data / "labels.csv"), "image_size": [32, 32], "channels": 3},
            "model": {"params": {"width": 16, "depth": 3, "dense_units": 64}},
            "train": {"epochs": 8, "verbose": 0, "explain_images": 2},
            "tracking": {"uri": uri},
            "export": {"enabled": True},
        }
    )
    result = kerasflow.train(cfg)
    assert result.test_metrics["test_micro_f1"] > 0.6  # a short run; the packaged config: >= 0.95
    report = result.report
    assert set(report["per_label"]) == {"circle", "cross", "square", "triangle"}
    export = sorted((result.work_dir / "export").iterdir())[-1]
    meta = json.loads((export / "assets" / "kerasflow.json").read_text())
    assert meta["task"] == "multilabel" and meta["thresholds"] == report["thresholds"]
    assert "explanations_test_gradcam.png" in result.artifacts

    server = Server([str(export)], server_env(uri), tmp_path / "serve.log")
    try:
        server.wait()
        rows = [r.split(",", 1) for r in (data / "labels.csv").read_text().splitlines()[1:9]]
        body = {"instances": [{"b64": base64.b64encode((data / p).read_bytes()).decode()}
                              for p, _ in rows]}  # fmt: skip
        status, answer = post(server.url + "/invocations", json.dumps(body).encode())
    finally:
        server.stop()
    assert status == 200, answer[:500]
    predictions = json.loads(answer)["predictions"]
    assert len(predictions) == 8
    names = meta["class_names"]
    for pred in predictions:
        probs = np.array([pred["probabilities"][n] for n in names])
        # The served names are exactly the labels over their stored thresholds.
        over = [n for n, p, t in zip(names, probs, meta["thresholds"], strict=True) if p >= t]
        assert pred["labels"] == over
    truth = [set(filter(None, labels.split("|"))) for _, labels in rows]
    hits = sum(set(p["labels"]) == t for p, t in zip(predictions, truth, strict=True))
    assert hits >= 4, (predictions, truth)
