"""A search killed with SIGKILL in the middle of a trial resumes when the same command runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kerasflow.config import load_config
from kerasflow.tuning import tune
from tests.tuning.helpers import tiny_config, write_config

KERASFLOW = str(Path(sys.executable).parent / "kerasflow")


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.mark.slow
def test_resume_after_sigkill_in_the_middle_of_a_trial(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    data = tiny_config(
        tmp_path,
        uri,
        "resume",
        tune={
            "tuner": "random",
            "max_trials": 3,
            "space": {"model.params.width": {"choice": [2, 4, 6, 8]}},
        },
        train={"epochs": 3},
    )
    path = write_config(tmp_path / "resume.yaml", data)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [KERASFLOW, "tune", path],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = MlflowClient(uri)
    deadline = time.monotonic() + 240
    victim = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                running = [
                    r
                    for r in _runs(client, "resume")
                    if r.data.tags.get("kerasflow.trial_id") == "1" and r.info.status == "RUNNING"
                ]
            except Exception:  # noqa: BLE001 - the store may be mid-creation
                running = []
            if running:
                victim = running[0].info.run_id
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert victim is not None, "trial 1 never started before the deadline"

    before = {r.info.run_id: r for r in _runs(client, "resume")}
    (parent_before,) = [r for r in before.values() if r.data.tags["kerasflow.role"] == "search"]
    assert parent_before.info.status == "RUNNING"  # SIGKILL left it open
    trial0 = [r for r in before.values() if r.data.tags.get("kerasflow.trial_id") == "0"]
    assert [r.info.status for r in trial0] == ["FINISHED"]

    result = tune(load_config(path))

    assert result.parent_run_id == parent_before.info.run_id
    assert result.num_trials == 3
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 3
    runs = _runs(client, "resume")
    assert "RUNNING" not in {r.info.status for r in runs}
    by_trial: dict[str, list[str]] = {}
    for run in runs:
        if run.data.tags["kerasflow.role"] == "trial":
            by_trial.setdefault(run.data.tags["kerasflow.trial_id"], []).append(run.info.status)
    assert {k: sorted(v) for k, v in by_trial.items()} == {
        "0": ["FINISHED"],
        "1": ["FINISHED", "KILLED"],
        "2": ["FINISHED"],
    }
    assert client.get_run(victim).info.status == "KILLED"
    # The finished trial was not re-run: its one run is the same as before the kill.
    assert result.trials[0]["run_id"] == trial0[0].info.run_id
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
    assert len(client.search_model_versions("name = 'resume-model'")) == 1
