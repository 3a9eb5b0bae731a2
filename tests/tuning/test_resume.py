"""A search killed with SIGKILL in the middle of a trial resumes when the same command runs again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
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


def _running_trial_run(db: Path, experiment: str, trial_id: str) -> str | None:
    """The RUNNING run of ``trial_id``, read straight from the SQLite store (about a millisecond).

    MLflow's ``search_runs`` takes hundreds of milliseconds on a busy machine, long enough to miss
    a short trial entirely (CI saw trial 3 start and finish between two polls).
    """
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute(
            "SELECT r.run_uuid FROM runs r"
            " JOIN experiments e ON e.experiment_id = r.experiment_id"
            " JOIN tags t ON t.run_uuid = r.run_uuid"
            " WHERE e.name = ? AND r.status = 'RUNNING'"
            " AND t.key = 'kerasflow.trial_id' AND t.value = ?",
            (experiment, trial_id),
        ).fetchone()
    return row[0] if row else None


def _kill_during_trial(path: str, cwd: Path, experiment: str, trial_id: str) -> str:
    """Start ``kerasflow tune`` in a subprocess, SIGKILL it while ``trial_id`` runs; that trial's run."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log_path = cwd / f"tune-killed-in-trial-{trial_id}.log"
    db = cwd / "mlruns" / "mlflow.db"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [KERASFLOW, "tune", path],
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 600
    victim = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                victim = _running_trial_run(db, experiment, trial_id)
            except sqlite3.Error:  # the store may be mid-creation or mid-migration
                victim = None
            if victim is not None:
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert victim is not None, (
        f"trial {trial_id} never started (exit {proc.returncode}):\n{log_path.read_text()[-3000:]}"
    )
    return victim


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
    client = MlflowClient(uri)
    victim = _kill_during_trial(path, tmp_path, "resume", "1")

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


def _grid_config(tmp_path) -> str:
    data = tiny_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        "grid",
        tune={
            "tuner": "grid",
            "max_trials": 4,
            "space": {"model.params.width": {"choice": [2, 3, 4, 5]}},
        },
        train={"epochs": 2, "steps_per_epoch": 2},
    )
    return write_config(tmp_path / "grid.yaml", data)


def _trial_statuses(client) -> dict[str, list[str]]:
    statuses: dict[str, list[str]] = {}
    for run in _runs(client, "grid"):
        if run.data.tags["kerasflow.role"] == "trial":
            statuses.setdefault(run.data.tags["kerasflow.trial_id"], []).append(run.info.status)
    return {k: sorted(v) for k, v in statuses.items()}


def _check_grid_finished(result, client, killed: list[str]) -> None:
    assert result.num_trials == 4
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 4
    assert sorted(r["model.params.width"] for r in result.trials) == [2, 3, 4, 5]
    expected = {t: ["FINISHED"] + ["KILLED"] * killed.count(t) for t in "0123"}
    assert _trial_statuses(client) == expected
    finished = client.get_run(result.parent_run_id)
    assert finished.info.status == "FINISHED"
    assert "kerasflow.error" not in finished.data.tags
    assert len(client.search_model_versions("name = 'grid-model'")) == 1


@pytest.mark.slow
def test_grid_search_resumes_after_sigkill_in_trial_1_then_2_then_3(tmp_path):
    """Keras Tuner's grid oracle loses its grid order on reload (``KeyError: '1'``, lost points).

    Each re-run is killed in the next trial, so each resumes the previous one's kill; the last
    runs to the end. (The extended test resumes each kill point from a single kill.)
    """
    path = _grid_config(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    victims = [_kill_during_trial(path, tmp_path, "grid", t) for t in "123"]
    assert _trial_statuses(client) == {
        "0": ["FINISHED"],
        "1": ["FINISHED", "KILLED"],
        "2": ["FINISHED", "KILLED"],
        "3": ["RUNNING"],  # the last kill's orphan: the next run marks it KILLED
    }
    (parent,) = [r for r in _runs(client, "grid") if r.data.tags["kerasflow.role"] == "search"]
    client.set_tag(parent.info.run_id, "kerasflow.error", "KeyError: '2'")  # an earlier failure

    result = tune(load_config(path))

    assert result.parent_run_id == parent.info.run_id
    _check_grid_finished(result, client, ["1", "2", "3"])
    assert {client.get_run(v).info.status for v in victims} == {"KILLED"}

    # A kill after trial 3's run FINISHED but before Keras Tuner saved the trial as ended:
    # the oracle retries it; its finished run and weights stand, nothing runs twice.
    project = result.project_dir
    oracle = json.loads((project / "oracle.json").read_text())
    oracle["ongoing_trials"] = {"tuner0": "3"}
    oracle["end_order"] = [t for t in oracle["end_order"] if t != "3"]
    (project / "oracle.json").write_text(json.dumps(oracle))
    trial = json.loads((project / "trial_3" / "trial.json").read_text())
    trial.update(status="RUNNING", score=None, best_step=0, metrics={"metrics": {}})
    (project / "trial_3" / "trial.json").write_text(json.dumps(trial))
    again = tune(load_config(path))
    _check_grid_finished(again, client, ["1", "2", "3"])
    assert again.trials[3]["objective"] == result.trials[3]["objective"]


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.parametrize("killed", ["1", "2", "3"])
def test_grid_search_resumes_every_point_after_sigkill(tmp_path, killed):
    path = _grid_config(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    victim = _kill_during_trial(path, tmp_path, "grid", killed)
    (parent,) = [r for r in _runs(client, "grid") if r.data.tags["kerasflow.role"] == "search"]
    client.set_tag(parent.info.run_id, "kerasflow.error", "KeyError: '2'")  # an earlier failure

    result = tune(load_config(path))

    _check_grid_finished(result, client, [killed])
    assert client.get_run(victim).info.status == "KILLED"
