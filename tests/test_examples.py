import runpy
from pathlib import Path

from mlflow.tracking import MlflowClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_fit_script_example_logs_every_epoch(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    module = runpy.run_path(str(EXAMPLES / "fit_script.py"))
    out = module["main"](["--epochs", "2", "--tracking-uri", uri])
    client = MlflowClient(uri)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
    assert run.data.metrics["val_accuracy"] == out["history"]["val_accuracy"][-1]
    assert run.data.metrics["val_accuracy"] > 0.5
