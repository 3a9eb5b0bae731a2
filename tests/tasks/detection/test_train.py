"""End to end: a tiny detection run through kerasflow.train (tracking, grid, export)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests.tasks.detection.helpers import tiny_run


@pytest.mark.slow
def test_tiny_detection_run_trains_logs_and_exports(tmp_path):
    import mlflow

    import kerasflow
    from kerasflow.config import build_config

    cfg = build_config(
        tiny_run(
            tmp_path,
            "det-e2e",
            data={
                "split": {"train": 0.7, "validation": 0.15, "test": 0.15},
                "augment": {"horizontal_flip": True},
                "detection": {"synthetic_images": 48, "max_boxes": 8, "crop_scale": [0.8, 1.2]},
            },
            train={"epochs": 4},
            compile={"optimizer": {"name": "adam", "learning_rate": 0.003}, "loss": "centernet"},
            export={"enabled": True},
        )
    )
    uri = cfg.tracking.uri
    result = kerasflow.train(cfg)
    losses = [v for _, v in sorted(result.history["loss"].items())]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert len(result.history["val_map50"]) == 4
    report = json.loads((result.work_dir / "artifacts" / "evaluation_test.json").read_text())
    assert set(report["per_class"]) == {"circle", "square", "triangle", "cross"}
    assert 0.0 <= result.test_metrics["test_map50"] <= 1.0
    assert np.isfinite(result.test_metrics["test_loss"])
    # The prediction grid and the report are MLflow artifacts of the run.
    client = mlflow.MlflowClient(uri)
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"predictions_test.png", "evaluation_test.json", "report_test.html"} <= names
    page = (result.work_dir / "artifacts" / "report_test.html").read_text()
    assert result.run_id in page and f"<td>{report['map50']:.4f}</td>" in page
    # `kerasflow evaluate` on the logged detector writes the page it names.
    from click.testing import CliRunner

    from kerasflow.cli import cli

    out = tmp_path / "ev"
    model = f"runs:/{result.run_id}/model"
    res = CliRunner().invoke(
        cli, ["evaluate", model, "--out", str(out)], env={"MLFLOW_TRACKING_URI": uri}
    )
    assert res.exit_code == 0, res.output
    assert f"HTML report:       {out / 'report_test.html'}" in res.output
    again = json.loads((out / "evaluation_test.json").read_text())
    assert again["map50"] == pytest.approx(report["map50"], abs=1e-6)
    assert again["model"] == model and again["run_id"] == result.run_id
    page = (out / "report_test.html").read_text()
    assert f"<td>{again['map50']:.4f}</td>" in page and "Predicted boxes" in page
    assert result.registered is not None
    export_dir = result.work_dir / "export" / "1"
    meta = json.loads((export_dir / "assets" / "kerasflow.json").read_text())
    assert meta["task"] == "detection" and meta["class_names"][0] == "circle"
    # The logged pyfunc serving model answers an encoded image with boxes.
    from kerasflow.serving import mlflow_model as tracked

    tags = client.get_run(result.run_id).data.tags
    served = tracked.load_serving_model(tags["kerasflow.serving_model_uri"], uri=uri)
    image = next((tmp_path / "data").rglob("0000.png")).read_bytes()
    (pred,) = served.predict({"b64": [base64.b64encode(image).decode()]})
    assert set(pred) == {"boxes", "scores", "class_ids", "class_names"}
    assert all(len(b) == 4 and min(b) >= 0 and max(b) <= 64 for b in pred["boxes"])


def test_detection_training_input_is_repeated_with_one_pass_per_epoch(tmp_path):
    import tensorflow as tf

    from kerasflow.config import build_config
    from kerasflow.pipelines.detection_data import prepare_detection
    from kerasflow.training.fit import fit_input
    from tests.tasks.detection.helpers import write_coco

    images = [(f"{i}.png", 32, 32, [([4, 4, 10, 10], 1)]) for i in range(10)]
    ann = write_coco(tmp_path, images, categories=("block",))
    cfg = build_config(
        {
            "experiment": {"task": "detection"},
            "model": {"name": "centernet"},
            "data": {"source": str(ann), "image_size": [32, 32], "batch_size": 4,
                     "split": {"train": 1.0, "validation": 0.0, "test": 0.0}},
        }
    )  # fmt: skip
    prepared = prepare_detection(cfg.data)
    ds, steps = fit_input(cfg, prepared, prepared.dataset("train"))
    # One iterator for the whole fit, like classification: no dataset end between epochs.
    assert ds.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    assert steps == 3  # ceil(10 / 4): the last batch of each pass holds 2
    sizes = [int(x.shape[0]) for x, _ in ds.take(2 * steps)]
    assert sizes == [4, 4, 2, 4, 4, 2]


def test_multi_worker_detection_is_an_error_before_anything_runs(tmp_path):
    import kerasflow
    from kerasflow.config import build_config
    from kerasflow.errors import ConfigError

    cfg = build_config(tiny_run(tmp_path, "det-mw", train={"strategy": "multi_worker"}))
    with pytest.raises(ConfigError, match="multi-worker loop.*detection.*mirrored"):
        kerasflow.train(cfg)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_detector_trains_inside_the_mirrored_strategy(tmp_path):
    import subprocess
    import sys

    # Logical CPU devices must exist before TensorFlow starts: a fresh process.
    script = (
        "import json, sys, kerasflow\n"
        "from kerasflow.config import build_config\n"
        "from kerasflow.training import distribute, fit\n"
        "seen, fit_model = {}, fit.fit_model\n"
        "def spy(model, *args, **kwargs):  # what fit trains: the model of the strategy's scope\n"
        "    seen['variable'] = type(model.trainable_weights[0].value).__name__\n"
        "    return fit_model(model, *args, **kwargs)\n"
        "fit.fit_model = spy\n"
        "cfg = build_config(json.loads(sys.argv[1]))\n"
        "result = kerasflow.train(cfg)\n"
        "print('RESULT', json.dumps({\n"
        "    'replicas': distribute.setup(cfg.train).num_replicas,\n"
        "    'variable': seen['variable'],\n"
        "    'loss': [v for _, v in sorted(result.history['loss'].items())],\n"
        "    'val_map': len(result.history['val_map']),\n"
        "    'map50': result.test_metrics['test_map50']}))\n"
    )
    run = tiny_run(
        tmp_path,
        "det-mirrored",
        # 48 images: 9 test images in batches of 8 leave one replica an empty last batch.
        data={"detection": {"synthetic_images": 48, "max_boxes": 8}},
        train={"epochs": 3, "strategy": "mirrored", "cpu_replicas": 2, "explain_images": 0},
        compile={"optimizer": {"name": "adam", "learning_rate": 0.003}},
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(run)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    # Built inside the strategy's scope: its variables are mirrored over both replicas.
    assert out["replicas"] == 2 and out["variable"] == "MirroredVariable"
    assert out["loss"][-1] < out["loss"][0] and out["val_map"] == 3
    assert 0.0 <= out["map50"] <= 1.0
