"""Registration plus champion aliasing is one step for concurrent kerasflow processes on one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from kerasflow.tracking import model_registry as registry
from kerasflow.tracking.locks import file_lock, registry_lock_path

SCORES = [0.91, 0.97, 0.93, 0.99, 0.92, 0.95, 0.90, 0.94]

# One registering process: waits for the GO file so that all eight register together.
REGISTER = """
import json, sys, time
from pathlib import Path
from kerasflow.tracking import model_registry
uri, run_id, go = sys.argv[1:4]
while not Path(go).exists():
    time.sleep(0.01)
reg = model_registry.register(f"runs:/{run_id}/model", "race", run_id, "test_accuracy", uri=uri)
print(json.dumps({"run_id": run_id, **reg.__dict__}))
"""


def _runs_with_models(uri: str) -> dict[str, float]:
    """One finished run per score, each with a ``model`` artifact (registering needs no more)."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("race")
    runs = {}
    for score in SCORES:
        with mlflow.start_run() as run:
            mlflow.log_metric("test_accuracy", score)
            mlflow.log_text("a registered artifact", "model/MLmodel")
        runs[run.info.run_id] = score
    return runs


@pytest.mark.slow
def test_eight_concurrent_registrations_leave_the_best_champion_and_tell_each_the_truth(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    runs = _runs_with_models(uri)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER, uri, run_id, str(go)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in runs
    ]
    time.sleep(1.0)
    go.touch()
    told = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
        told.append(json.loads(out.strip().splitlines()[-1]))

    client = MlflowClient(uri)
    champion = client.get_model_version_by_alias("race", registry.CHAMPION)
    assert runs[champion.run_id] == max(SCORES)
    # Versions were handed out in the order the registrations happened: each process was told
    # "champion" exactly when it beat every version registered before it, and otherwise which
    # version held the alias and with what score.
    told.sort(key=lambda r: int(r["version"]))
    assert [r["version"] for r in told] == [str(v) for v in range(1, 9)]
    best_so_far, holder = None, None
    for r in told:
        score = runs[r["run_id"]]
        assert r["value"] == score
        assert r["previous_champion"] == holder
        assert r["champion"] == (best_so_far is None or score > best_so_far)
        if r["champion"]:
            assert r["reason"] is None
            best_so_far, holder = score, r["version"]
        else:
            assert r["reason"] == (
                f"test_accuracy {score:.4f} does not beat champion version {holder} "
                f"(test_accuracy {best_so_far:.4f})"
            )
    assert sum(r["champion"] for r in told) >= 1
    assert [r["version"] for r in told if r["champion"]][-1] == str(champion.version)
    # The lock file stays beside the database, free.
    lock = registry_lock_path(uri)
    assert lock == tmp_path / "mlruns" / "registry.lock"
    with file_lock(lock, timeout=1):
        pass


def test_a_held_registry_lock_times_out_with_a_message_naming_the_file_and_holder(tmp_path):
    from kerasflow.errors import TrackingError

    lock = tmp_path / "registry.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); "
            "print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(TrackingError, match=rf"{lock}.*held by pid {holder.pid}"),
            file_lock(lock, timeout=0.3),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    # A dead holder's lock is free at once.
    with file_lock(lock, timeout=1):
        assert lock.read_text() == str(os.getpid())


def test_lock_paths_of_store_kinds(tmp_path):
    assert (
        registry_lock_path(f"sqlite:///{tmp_path}/db/mlflow.db")
        == tmp_path / "db" / "registry.lock"
    )
    assert registry_lock_path(f"file://{tmp_path}/store") == tmp_path / "store" / "registry.lock"
    assert registry_lock_path(str(tmp_path / "store")) == tmp_path / "store" / "registry.lock"
    assert registry_lock_path("http://127.0.0.1:5000") is None
