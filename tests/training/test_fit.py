"""The foundation's end-to-end run: the packaged digits config trained, tracked and registered."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import kerasflow
from kerasflow.tracking.model_registry import CHAMPION
from tests.conftest import overrides_for


def test_default_config_reaches_floor_accuracy(digits_result):
    # The acceptance floor of the demo: >= 0.985 on the held-out digits test split.
    assert digits_result.test_metrics["test_accuracy"] >= 0.985
    report = digits_result.report
    assert report["num_examples"] == 359
    assert np.array(report["confusion_matrix"]).sum() == 359
    assert 0.98 <= report["macro_f1"] <= 1.0


def test_run_is_tracked_with_params_metrics_artifacts(digits_result, tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    run = client.get_run(digits_result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.name"] == "simple_cnn"
    assert params["compile.optimizer.name"] == "adam"
    assert params["data.size.test"] == "359"
    assert json.loads(params["data.image_size"]) == [16, 16]
    metrics = run.data.metrics
    assert metrics["test_accuracy"] == pytest.approx(digits_result.test_metrics["test_accuracy"])
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    steps = [m.step for m in history]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 10
    assert len(client.get_metric_history(run.info.run_id, "learning_rate")) == len(steps)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    for expected in (
        "config.yaml",
        "model_summary.txt",
        "splits.csv",
        "evaluation_test.json",
        "confusion_matrix_test.png",
        "training_curves.png",
    ):
        assert expected in names, names
    # Through this store's client: mlflow.artifacts.load_text would read the process-wide URI.
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    logged = kerasflow.config.build_config(__import__("yaml").safe_load(Path(local).read_text()))
    assert logged.model.name == "simple_cnn" and logged.train.epochs == 50


def test_model_registered_as_champion_and_loads(digits_result, tracking_uri):
    reg = digits_result.registered
    assert reg.name == "digits-cnn" and reg.champion
    client = MlflowClient(tracking_uri)
    assert str(client.get_model_version_by_alias("digits-cnn", CHAMPION).version) == reg.version
    from kerasflow.tracking.model_registry import load_model

    model = load_model("models:/digits-cnn@champion", tracking_uri)
    x = next(iter(kerasflow.pipelines.build(digits_result.config.data, "test")))[0].numpy()[:8]
    np.testing.assert_allclose(
        model.predict(x, verbose=0), digits_result.model.predict(x, verbose=0), atol=1e-6
    )


def test_worse_run_does_not_take_champion(digits_result, store_dir, tracking_uri):
    cfg = kerasflow.load_config(
        None,
        overrides_for(
            store_dir,
            tracking_uri,
            "digits",
            "train.epochs=3",
            "train.verbose=0",
            "model.params.width=4",
        ),
    )
    result = kerasflow.train(cfg)
    assert result.registered.version != digits_result.registered.version
    assert not result.registered.champion
    assert result.registered.previous_champion == digits_result.registered.version
    client = MlflowClient(tracking_uri)
    champion = client.get_model_version_by_alias("digits-cnn", CHAMPION)
    assert str(champion.version) == digits_result.registered.version


def test_best_epoch_weights_are_restored(digits_result):
    # The model returned is the best checkpoint by val_loss, not the last epoch's.
    hist = digits_result.history["val_loss"]
    best_epoch = min(hist, key=hist.get)
    prepared = kerasflow.pipelines.prepare(
        digits_result.config.data, digits_result.config.experiment.seed
    )
    loss = digits_result.model.evaluate(
        prepared.dataset("validation"), verbose=0, return_dict=True
    )["loss"]
    assert loss == pytest.approx(hist[best_epoch], rel=1e-3)


def test_tracking_disabled_trains_without_mlflow(store_dir, tmp_path):
    cfg = kerasflow.load_config(
        None,
        [
            f"experiment.work_dir={tmp_path}",
            "tracking.enabled=false",
            "train.epochs=3",
            "train.verbose=0",
            "model.params.width=8",
            "train.resume=false",
        ],
    )
    result = kerasflow.train(cfg)
    assert result.run_id is None and result.registered is None
    assert set(result.history["loss"]) == {1, 2, 3}
    assert 0.0 <= result.test_metrics["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_registered_model_loads_in_a_fresh_process_without_kerasflow(digits_result, tracking_uri):
    # The logged model is an uncompiled inference copy: plain MLflow loads it with no kerasflow import.
    import subprocess
    import sys

    code = (
        "import sys, mlflow, numpy as np\n"
        f"mlflow.set_tracking_uri({tracking_uri!r})\n"
        "m = mlflow.keras.load_model('models:/digits-cnn@champion')\n"
        "assert 'kerasflow' not in sys.modules\n"
        "print(m.predict(np.zeros((2, 16, 16, 1), 'float32'), verbose=0).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(2, 10)")


def test_mixup_trains_with_soft_targets(tmp_path):
    # MixUp gives one-hot float targets; the default sparse cross-entropy and accuracy take them.
    cfg = kerasflow.load_config(
        None,
        [
            f"experiment.work_dir={tmp_path}",
            "tracking.enabled=false",
            "data.augment.mixup=0.2",
            "data.image_size=[8,8]",
            "train.epochs=3",
            "compile.schedule.warmup_epochs=0",
            "train.verbose=0",
        ],
    )
    result = kerasflow.train(cfg)
    assert result.history["loss"][3] < result.history["loss"][1]
    assert result.test_metrics["test_accuracy"] > 0.5


def test_prepared_data_keeps_one_split_across_seeds(tmp_path):
    # train(prepared=...) trains and tests on the split it was given, whatever experiment.seed.
    from kerasflow import pipelines
    from kerasflow.errors import ConfigError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        f"experiment.work_dir={tmp_path / 'runs'}",
        f"tracking.uri={uri}",
        "tracking.log_model=false",
        "data.image_size=[8,8]",
        "model.params.width=8",
        "train.epochs=1",
        "compile.schedule.warmup_epochs=0",
        "train.explain_images=0",
        "train.verbose=0",
    ]
    cfg = kerasflow.load_config(None, [*overrides, "experiment.seed=5"])
    prepared = pipelines.prepare(cfg.data, 4)
    own = pipelines.prepare(cfg.data, 5)
    assert own.split_table() != prepared.split_table()  # the seed decides the split
    result = kerasflow.train(cfg, prepared=prepared)
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["kerasflow.split_seed"] == "4"
    logged = Path(client.download_artifacts(result.run_id, "splits.csv", str(tmp_path))).read_text()
    rows = [tuple(line.split(",")) for line in logged.strip().splitlines()[1:]]
    assert rows == [(k, s, str(y)) for k, s, y in prepared.split_table()]
    assert result.work_dir.name.endswith("-split4")
    assert result.report["num_examples"] == prepared.size("test")

    other = kerasflow.load_config(None, [*overrides, "data.image_size=[12,12]"])
    with pytest.raises(ConfigError, match=r"prepared=.*another data: section"):
        kerasflow.train(other, prepared=prepared)
