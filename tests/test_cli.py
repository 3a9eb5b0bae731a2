"""The `kerasflow` command: exit codes, messages, and resume after a real SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

import kerasflow
from kerasflow.cli import cli
from kerasflow.training.fit import work_dir_for


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def test_version():
    result = _run("--version")
    assert result.exit_code == 0 and kerasflow.__version__ in result.output


def test_typo_in_config_exits_2_naming_field(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("compile:\n  optimiser: adam\n")
    result = _run("train", str(cfg))
    assert result.exit_code == 2
    assert "compile.optimiser: unknown key" in result.output
    assert "Did you mean 'optimizer'?" in result.output
    assert "Traceback" not in result.output


def test_wrong_type_and_unknown_model_exit_2(tmp_path):
    result = _run("train", "--set", "train.epochs=lots")
    assert result.exit_code == 2 and "train.epochs" in result.output
    result = _run("train", "--set", "model.name=resnet_5")
    assert result.exit_code == 2
    assert "model.name" in result.output and "simple_cnn" in result.output


def test_missing_config_file_exits_2(tmp_path):
    result = _run("train", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2 and "not found" in result.output


def test_evaluate_bad_model_argument_exits_2(tmp_path):
    result = _run("evaluate", str(tmp_path / "model.h5"), "--config", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2


def test_evaluate_registered_model(digits_result, tracking_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    out = tmp_path / "eval"
    result = _run("evaluate", "models:/digits-cnn@champion", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation_test.json").read_text())
    assert report["accuracy"] == pytest.approx(digits_result.test_metrics["test_accuracy"])
    assert "accuracy" in result.output


def _metadata_epoch(path):
    try:
        return json.loads(path.read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_mid_training_resumes_same_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    epochs = 6
    args = [
        sys.executable,
        "-m",
        "kerasflow",
        "train",
        "--set",
        "experiment.name=resume",
        "--set",
        f"experiment.work_dir={tmp_path / 'runs'}",
        "--set",
        f"tracking.uri={uri}",
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "train.early_stopping.enabled=false",
        "--set",
        "train.verbose=2",
        # Bigger images so an epoch lasts long enough to be killed in the middle of one.
        "--set",
        "data.image_size=[48,48]",
        "--set",
        "data.batch_size=16",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    log_file = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed below
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    cfg = kerasflow.load_config(None, [a for a in args[args.index("--set") :] if a != "--set"])
    meta = work_dir_for(cfg) / "backup" / "training_metadata.json"
    deadline = time.time() + 240
    while _metadata_epoch(meta) < 2 and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    killed_after = _metadata_epoch(meta)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    log_file.close()
    assert 2 <= killed_after < epochs

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("resume")
    (run_before,) = client.search_runs([exp.experiment_id])
    assert run_before.info.status == "RUNNING"  # a SIGKILL gives MLflow no chance to close it

    second = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # The killed process's lock is taken over, with a notice naming it.
    assert f"from pid {first.pid} on " in second.stderr
    resumed_from = _metadata_epoch_from_output(second.stdout)
    assert resumed_from >= killed_after
    # Keras prints "Epoch k/N" only for epochs it runs: the first resumed epoch is not epoch 1.
    assert "Epoch 1/" not in second.stdout + second.stderr

    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == run_before.info.run_id
    assert runs[0].info.status == "FINISHED"
    for key in ("loss", "val_loss", "accuracy"):
        steps = [m.step for m in client.get_metric_history(run_before.info.run_id, key)]
        assert sorted(steps) == list(range(1, epochs + 1)), (key, steps)
    assert "test_accuracy" in runs[0].data.metrics


def _metadata_epoch_from_output(text):
    for line in text.splitlines():
        if line.startswith("Resumed from epoch"):
            return int(line.split()[-1].rstrip("."))
    raise AssertionError(f"no 'Resumed from epoch' line in:\n{text[-2000:]}")


def test_registration_line_says_why_a_model_is_not_champion(capsys):
    from kerasflow.cli import _echo_registered
    from kerasflow.tracking.model_registry import RegisteredVersion

    reason = "test_accuracy 0.10 is at chance (0.11)"
    blocked = RegisteredVersion(
        "digits-cnn", "3", False, "test_accuracy", 0.1, not_champion_reason=reason
    )
    _echo_registered(blocked)
    _echo_registered(RegisteredVersion("digits-cnn", "4", False, "test_accuracy", 0.9, "2"))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "Registered model:  models:/digits-cnn/3 (NOT champion: test_accuracy 0.10 is at chance (0.11))",
        "Registered model:  models:/digits-cnn/4 (not champion (champion stays version 2))",
    ]


@pytest.mark.slow
def test_train_on_a_one_class_folder_exits_2_before_any_run(tmp_path):
    """A real ``kerasflow train`` process: the one-class folder is bad input (exit 2), no run."""
    from PIL import Image

    (tmp_path / "data" / "cat").mkdir(parents=True)
    for i in range(6):
        Image.new("L", (8, 8), 40 * i).save(tmp_path / "data" / "cat" / f"{i}.png")
    store = tmp_path / "mlruns" / "mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "kerasflow", "train",
         "--set", f"data.source={tmp_path / 'data'}", "--set", "data.image_size=[8, 8]",
         "--set", f"tracking.uri=sqlite:///{store}", "--set", f"experiment.work_dir={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "data") in proc.stderr and "cat" in proc.stderr
    assert (
        not store.exists()
        or MlflowClient(f"sqlite:///{store}").search_runs(
            [e.experiment_id for e in MlflowClient(f"sqlite:///{store}").search_experiments()]
        )
        == []
    )
