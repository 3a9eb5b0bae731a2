"""Distributed tuning: roles, Keras Tuner's environment, and a real chief with two workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kerasflow.errors import ConfigError
from kerasflow.tracking.store import server_command, subprocess_env
from kerasflow.tuning.distributed import Role, keras_tuner_env, resolve_role
from tests.net import free_ports, wait_http
from tests.tuning.helpers import tiny_config, write_config

KERASFLOW = str(Path(sys.executable).parent / "kerasflow")


def test_roles_from_arguments():
    assert resolve_role(False, None, "127.0.0.1", None, None) == Role()
    assert not Role().distributed
    chief = resolve_role(True, 8000, "0.0.0.0", None, None)
    assert chief == Role("chief", "chief", "0.0.0.0", 8000) and chief.distributed
    worker = resolve_role(False, None, "127.0.0.1", 3, "10.0.0.2:8000")
    assert worker == Role("worker", "worker3", "10.0.0.2", 8000)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((True, 8000, "127.0.0.1", "1", None), "not both"),
        ((True, None, "127.0.0.1", None, None), "--port"),
        ((False, None, "127.0.0.1", "chief2", "h:1"), "without the word 'chief'"),
        ((False, None, "127.0.0.1", "", "h:1"), "without the word 'chief'"),
        ((False, None, "127.0.0.1", "1", "nohost"), "HOST:PORT"),
        ((False, None, "127.0.0.1", "1", "h:port"), "must be a number"),
        ((False, None, "127.0.0.1", None, "h:1"), "add --worker ID"),
    ],
)
def test_bad_role_arguments_are_named(args, message):
    with pytest.raises(ConfigError, match=message):
        resolve_role(*args)


def test_keras_tuner_env_is_set_for_the_search_and_restored(monkeypatch):
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "theirs")
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    with keras_tuner_env(Role("worker", "worker1", "10.0.0.2", 8000)):
        assert os.environ["KERASTUNER_TUNER_ID"] == "worker1"
        assert os.environ["KERASTUNER_ORACLE_IP"] == "10.0.0.2"
        assert os.environ["KERASTUNER_ORACLE_PORT"] == "8000"
    assert os.environ["KERASTUNER_TUNER_ID"] == "theirs"
    assert "KERASTUNER_ORACLE_IP" not in os.environ
    # A single search ignores a stray chief/worker setting of the shell.
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "10.0.0.9")
    with keras_tuner_env(Role()):
        assert not any(k.startswith("KERASTUNER_") for k in os.environ)
    assert os.environ["KERASTUNER_ORACLE_IP"] == "10.0.0.9"


def test_only_two_modules_use_keras_tuner_private_api():
    import kerasflow.tuning

    package = Path(kerasflow.tuning.__file__).parent
    private = ("keras_tuner.src", "_is_worker", "_populate_initial_space", "oracle_chief")
    users = {
        path.name
        for path in package.glob("*.py")
        if any(name in path.read_text() for name in private)
    }
    # distributed.py: the chief/worker wiring; oracles.py: the grid-resume workaround of
    # keras-tuner issue 1055, which rebuilds GridSearchOracle's in-memory order (LinkedList).
    assert users == {"distributed.py", "oracles.py"}


@pytest.mark.slow
def test_chief_and_two_workers_share_one_search(tmp_path):
    mlflow_port, oracle_port = free_ports(2)
    backend = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"
    (tmp_path / "server").mkdir()
    MlflowClient(backend).search_experiments()  # create the tables here: the server starts faster
    server = subprocess.Popen(
        server_command(
            port=mlflow_port,
            backend_uri=backend,
            artifacts_destination=str(tmp_path / "server" / "artifacts"),
            workers=1,
        ),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its uvicorn workers and job runners die with the group
    )
    procs: list[subprocess.Popen] = []
    try:
        uri = f"http://127.0.0.1:{mlflow_port}"
        data = tiny_config(
            tmp_path,
            uri,
            "dist",
            tune={
                "tuner": "random",
                "max_trials": 3,
                "space": {"model.params.width": {"choice": [2, 4, 6, 8]}},
            },
            train={"epochs": 1},
        )
        path = write_config(tmp_path / "dist.yaml", data)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        logs = {}
        commands = {
            "chief": [KERASFLOW, "tune", path, "--chief", "--port", str(oracle_port)],
            **{
                f"worker{i}": [
                    KERASFLOW,
                    "tune",
                    path,
                    "--worker",
                    str(i),
                    "--chief-address",
                    f"127.0.0.1:{oracle_port}",
                ]
                for i in (1, 2)
            },
        }
        for name, cmd in commands.items():
            logs[name] = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed below
            procs.append(
                subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=logs[name], stderr=logs[name])
            )
        # The processes import TensorFlow while the server starts; MLflow's client retries
        # until the server answers.
        wait_http(f"{uri}/health", timeout=180)
        for proc in procs:
            proc.wait(timeout=420)
        for f in logs.values():
            f.close()
        for name, proc in zip(commands, procs, strict=True):
            text = (tmp_path / f"{name}.log").read_text()
            assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{text[-3000:]}"

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("dist")
        runs = client.search_runs([exp.experiment_id])
        parents = [r for r in runs if r.data.tags.get("kerasflow.role") == "search"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        parent_id = parents[0].info.run_id
        trials = [r for r in runs if r.data.tags.get("kerasflow.role") == "trial"]
        assert all(r.data.tags["mlflow.parentRunId"] == parent_id for r in trials)
        assert all(r.info.status == "FINISHED" for r in trials)
        trial_ids = [r.data.tags["kerasflow.trial_id"] for r in trials]
        assert sorted(trial_ids) == ["0", "1", "2"]  # max_trials distinct trials, each once
        assert {r.data.tags["kerasflow.tuner_id"] for r in trials} <= {"worker1", "worker2"}
        assert len(client.search_model_versions("name = 'dist-model'")) == 1
        assert "test_accuracy" in parents[0].data.metrics
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
