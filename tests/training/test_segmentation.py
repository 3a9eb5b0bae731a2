"""Segmentation end to end: the packaged shapes config, shortened, trained, tracked and registered."""

import numpy as np
from mlflow.tracking import MlflowClient

import kerasflow
from kerasflow.config import default_config_path


def test_shapes_unet_run_logs_iou_and_registers_on_mean_iou(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = default_config_path().parent / "segmentation_shapes.yaml"
    cfg = kerasflow.load_config(
        path,
        [
            f"data.root={tmp_path / 'shapes'}",
            f"experiment.work_dir={tmp_path / 'runs'}",
            f"tracking.uri={uri}",
            "data.image_size=[32,32]",
            "model.params.width=8",
            "model.params.depth=2",
            "train.epochs=3",
            "compile.schedule.warmup_epochs=0",
            "train.verbose=0",
            "train.explain_images=0",
        ],
    )
    result = kerasflow.train(cfg)
    report = result.report
    assert report["task"] == "segmentation"
    assert set(report["per_class"]) == {"background", "circle", "square", "triangle"}
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == report["num_examples"] * 32 * 32
    assert report["pixel_accuracy"] == np.trace(cm) / cm.sum()
    metrics = MlflowClient(uri).get_run(result.run_id).data.metrics
    for key in ("test_mean_iou", "test_iou_background", "test_mean_dice", "val_mean_iou"):
        assert key in metrics, sorted(metrics)
    assert 0.0 <= metrics["test_mean_iou"] <= 1.0
    # The config's champion metric is test_mean_iou, so the first version becomes champion.
    assert result.registered.metric == "test_mean_iou" and result.registered.champion
