"""Config mistakes stop before any run, Ctrl-C marks it KILLED; seeds make runs repeatable."""

import _thread
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

import kerasflow
from kerasflow.errors import ConfigError, ModelError
from kerasflow.training.fit import work_dir_for
from tests.training.test_signals import python_sigint_handler

TINY = [
    "data.image_size=[8,8]",
    "model.params.width=4",
    "model.params.dense_units=16",
    "train.verbose=0",
    "compile.schedule.warmup_epochs=0",
]


def _cfg(tmp_path, name, *extra):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        f"experiment.name={name}",
        f"experiment.work_dir={tmp_path / 'runs'}",
        f"tracking.uri={uri}",
        *TINY,
        *extra,
    ]
    return kerasflow.load_config(None, overrides), MlflowClient(uri)


def _only_run(client, name):
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return run


def test_a_bad_task_choice_stops_before_any_run(tmp_path):
    cfg, client = _cfg(tmp_path, "early", "compile.loss.name=no_such_loss")
    with pytest.raises(ConfigError, match="no_such_loss.*sparse_categorical_crossentropy"):
        kerasflow.train(cfg)
    assert client.get_experiment_by_name("early") is None  # no run was started
    assert not work_dir_for(cfg).exists()


def test_a_bad_model_param_stops_before_any_run(tmp_path):
    # The model is built before the MLflow run starts: a config mistake leaves no FAILED run.
    # (A failure after the start marks the run FAILED: tests/training/test_run_lifecycle.py.)
    cfg, client = _cfg(tmp_path, "crash", "model.params.no_such_param=1")
    with pytest.raises(ModelError, match="no_such_param"):
        kerasflow.train(cfg)
    assert client.get_experiment_by_name("crash") is None


def test_ctrl_c_marks_run_killed(tmp_path):
    cfg, client = _cfg(tmp_path, "ctrlc", "train.epochs=400", "train.early_stopping.enabled=false")
    meta = work_dir_for(cfg) / "backup" / "training_metadata.json"

    def press_ctrl_c_after_first_epoch():
        deadline = time.time() + 300
        while not meta.exists() and time.time() < deadline:
            time.sleep(0.05)
        # Once. Under load a press was lost (raised in a garbage-collection callback) and the
        # 400 epochs ran to the end; training/signals.py now raises it after the next batch.
        _thread.interrupt_main()  # what Ctrl-C does

    with python_sigint_handler():
        threading.Thread(target=press_ctrl_c_after_first_epoch, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            kerasflow.train(cfg)
    run = _only_run(client, "ctrlc")
    assert run.info.status == "KILLED"
    assert 1 <= len(client.get_metric_history(run.info.run_id, "loss")) < 400


def test_same_seed_same_results(tmp_path):
    # Without experiment.deterministic (which switches TF op determinism on for the whole
    # process, for good): on CPU, seeding alone already repeats a run.
    results = []
    for i in range(2):
        cfg, _ = _cfg(
            tmp_path / str(i),
            "seeded",
            "train.epochs=2",
            "tracking.enabled=false",
        )
        results.append(kerasflow.train(cfg))
    a, b = (r.history["loss"] for r in results)
    assert a == b
    assert results[0].test_metrics == results[1].test_metrics
