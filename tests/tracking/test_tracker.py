import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from kerasflow.tracking import MlflowCallback, flatten_params, start_tracker
from kerasflow.tracking.store import default_tracking_uri, resolve_tracking_uri


def test_flatten_params():
    flat = flatten_params({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {}, "f": None})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "d": "x", "e": "{}", "f": "null"}


def test_default_store_is_sqlite_under_cwd_mlruns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert resolve_tracking_uri() == default_tracking_uri()
    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_tracking_uri() == "sqlite:///elsewhere.db"
    assert resolve_tracking_uri("http://127.0.0.1:1") == "http://127.0.0.1:1"


def _tiny():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    return model, x, (x[:, 0] > 0).astype("int64")


def test_callback_starts_its_own_run_and_logs_each_epoch(tmp_path):
    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    model, x, y = _tiny()
    cb = MlflowCallback(experiment="cb", tracking_uri=uri)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    client = MlflowClient(uri)
    run = client.get_run(cb.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(cb.run_id, "loss")] == [1, 2, 3]
    assert run.data.metrics["learning_rate"] == pytest.approx(0.01)
    assert run.info.artifact_uri.startswith((tmp_path / "artifacts").as_uri())


def test_callback_uses_active_run_and_skips_logged_epochs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    tracker = start_tracker("cb2", uri)
    tracker.log_metrics({"loss": 9.0}, step=1)  # as if epoch 1 was logged before a crash
    model, x, y = _tiny()
    cb = MlflowCallback()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    assert cb.run_id == tracker.run_id
    history = MlflowClient(uri).get_metric_history(tracker.run_id, "loss")
    assert sorted((m.step, m.value) for m in history)[0] == (1, 9.0)
    assert sorted(m.step for m in history) == [1, 2]
    tracker.end("KILLED")
    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None


def test_params_logged_once_and_resumed_run_reopens(tmp_path):
    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    tracker = start_tracker("p", uri)
    tracker.log_params({"a": {"b": 1}, "long": "x" * 7000})
    run_id = tracker.run_id
    tracker.end("FAILED")
    again = start_tracker("p", uri, run_id=run_id)
    assert again.resumed and again.run_id == run_id
    again.log_params({"a": {"b": 1}, "c": 2})  # already-logged keys are skipped, new ones added
    params = MlflowClient(uri).get_run(run_id).data.params
    assert params == {"a.b": "1", "long": "x" * 6000, "c": "2"}
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    again.end()
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"


def test_a_run_resumes_whatever_experiment_the_process_set_before(tmp_path):
    # MLflow's start_run(run_id=...) refuses a run of another experiment than the one an
    # earlier mlflow.set_experiment made active in this process (seen in a long test session).
    import mlflow

    from kerasflow.tracking import start_tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = start_tracker("resume-here", uri=uri)
    first.end("KILLED")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("some-other-experiment")
    again = start_tracker("resume-here", uri=uri, run_id=first.run_id)
    try:
        assert again.run_id == first.run_id and again.resumed
        assert mlflow.active_run().info.run_id == first.run_id
    finally:
        again.end("FINISHED")
