"""Training on several devices or processes: strategies, sharding, TF_CONFIG, multi-worker resume.

The slow tests start real processes on 127.0.0.1: MirroredStrategy over two
logical CPU devices, and MultiWorkerMirroredStrategy over two worker
processes, one of which is killed with SIGKILL mid-training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

import kerasflow
from kerasflow import pipelines
from kerasflow.cli import cli
from kerasflow.errors import ConfigError
from kerasflow.pipelines.sharding import shard_plan, sharded_dataset
from kerasflow.training import distribute
from kerasflow.training.custom_loop import BACKUP_DIR
from kerasflow.training.fit import work_dir_for
from tests.net import free_ports

# The small multi-worker job of the slow tests: 8x8 digits, a narrow CNN.
SMALL = [
    "data.image_size=[8,8]",
    "model.params.width=8",
    "model.params.dense_units=16",
    "compile.schedule.name=constant",
    "compile.schedule.warmup_epochs=0",
    "compile.optimizer.learning_rate=0.003",
    "train.early_stopping.enabled=false",
    "train.explain_images=0",
    "train.verbose=2",
    "train.worker_timeout_s=15",
]


# ---------------------------------------------------------------- fast: in process
def test_tf_config_for_workers():
    config = distribute.tf_config(["127.0.0.1:2001", "127.0.0.1:2002"], 1)
    assert config == {
        "cluster": {"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]},
        "task": {"type": "worker", "index": 1},
    }
    assert json.loads(distribute.tf_config_json(["a:1"], 0))["task"]["index"] == 0


@pytest.mark.parametrize(
    ("workers", "index", "message"),
    [
        (["127.0.0.1:2001"], 1, "--worker-index must be in 0..0"),
        (["127.0.0.1"], 0, "host:port"),
        (["h:1", "h:1"], 0, "twice"),
        ([], 0, "at least one"),
    ],
)
def test_tf_config_rejects_bad_clusters(workers, index, message):
    with pytest.raises(ConfigError, match=message):
        distribute.tf_config(workers, index)


def test_cli_needs_both_worker_options():
    result = CliRunner().invoke(cli, ["train", "--workers", "127.0.0.1:2001"])
    assert result.exit_code == 2
    assert "--workers and --worker-index go together" in result.output
    result = CliRunner().invoke(
        cli, ["train", "--workers", "127.0.0.1:2001", "--worker-index", "0", "--set",
              "train.strategy=mirrored"]
    )  # fmt: skip
    assert result.exit_code == 2 and "train.strategy='mirrored'" in result.output


def test_global_batch_and_learning_rate_scaling():
    cfg = kerasflow.load_config(None, ["train.scale_learning_rate=true"])
    one = distribute.Distribution(tf.distribute.get_strategy(), "default")
    assert one.num_replicas == 1 and one.per_replica_batch(32) == 32
    assert distribute.scaled_compile_config(cfg, one).optimizer.learning_rate == pytest.approx(1e-3)

    class FourReplicas:
        num_replicas_in_sync = 4

    four = distribute.Distribution(FourReplicas(), "mirrored")
    assert four.per_replica_batch(32) == 8
    with pytest.raises(ConfigError, match="data.batch_size=30"):
        four.per_replica_batch(30)
    assert distribute.scaled_compile_config(cfg, four).optimizer.learning_rate == pytest.approx(
        4e-3
    )
    unscaled = kerasflow.load_config(None)
    assert distribute.scaled_compile_config(unscaled, four) is unscaled.compile


def test_default_strategy_in_process():
    dist = distribute.setup(kerasflow.load_config(None).train)
    assert dist.kind == "default" and dist.is_chief and not dist.custom_loop
    work = Path("/x/run")
    assert dist.own_dir(work) == work and dist.shared_dir(work) == work
    worker = distribute.Distribution(dist.strategy, "multi_worker", 2, 1, is_chief=False)
    assert worker.own_dir(work) == work / "workers" / "worker-1"
    assert worker.shared_dir(worker.own_dir(work)) == work


def _labels_of(ds):
    return np.concatenate([y.numpy() for _, y in ds])


def test_shards_are_disjoint_and_cover_the_split():
    cfg = kerasflow.load_config(None, ["data.image_size=[8,8]"])
    prepared = pipelines.prepare(cfg.data, seed=3)
    plan = shard_plan(prepared, "test", 2, 1, batch_size=16)
    assert plan[1].stage == "shard" and "file-level" in plan[1].detail
    shards = [sharded_dataset(prepared, "test", 2, i, batch_size=16) for i in range(2)]
    images = [np.concatenate([x.numpy() for x, _ in ds]) for ds in shards]
    whole = np.concatenate([x.numpy() for x, _ in prepared.dataset("test", training=False)])
    assert [len(i) for i in images] == [180, 179] and len(whole) == 359
    assert max(len(b) for b, _ in shards[0]) == 16
    # Same examples, nothing twice: compare the images as byte strings.
    keys = [im.tobytes() for part in images for im in part]
    assert sorted(keys) == sorted(im.tobytes() for im in whole)
    assert sorted(np.concatenate([_labels_of(s) for s in shards])) == sorted(
        prepared.labels("test")
    )
    options = shards[0].options().experimental_distribute
    assert options.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF


# ---------------------------------------------------------------- slow: real processes
def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


class _Job:
    """Worker processes of one multi-worker job; killed at teardown whatever happens."""

    def __init__(self, tmp_path: Path, sets: list[str]):
        self.tmp_path = tmp_path
        self.sets = sets
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, tag: str, workers: str):
        self.procs, self.logs = [], []
        for index in range(len(workers.split(","))):
            log_path = self.tmp_path / f"{tag}-worker{index}.log"
            args = [sys.executable, "-m", "kerasflow", "train", "--workers", workers,
                    "--worker-index", str(index)]  # fmt: skip
            for item in self.sets:
                args += ["--set", item]
            with open(log_path, "w") as out:
                self.procs.append(
                    subprocess.Popen(
                        args, cwd=self.tmp_path, env=_env(), stdout=out, stderr=subprocess.STDOUT
                    )
                )
            self.logs.append(log_path)

    def wait(self, timeout: float) -> list[int]:
        deadline = time.time() + timeout
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, deadline - time.time())))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes

    def log(self, index: int) -> str:
        return self.logs[index].read_text()

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def job(tmp_path):
    jobs: list[_Job] = []

    def make(sets):
        jobs.append(_Job(tmp_path, sets))
        return jobs[-1]

    yield make
    for j in jobs:
        j.kill_all()


def _store_sets(tmp_path, name, epochs):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    return uri, [
        f"experiment.name={name}",
        f"experiment.work_dir={tmp_path / 'runs'}",
        f"tracking.uri={uri}",
        f"tracking.registered_model={name}-model",
        f"train.epochs={epochs}",
        *SMALL,
    ]


def _epoch_metrics(log: str, epoch: int) -> str:
    """The metrics text of the custom loop's ``epoch k/N (..s): loss=...`` line."""
    for line in log.splitlines():
        if f" epoch {epoch}/" in line:
            return line.split("): ", 1)[1]
    return ""


def _saved_epoch(backup: Path) -> int:
    latest = tf.train.latest_checkpoint(str(backup))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


@pytest.mark.slow
def test_mirrored_two_cpu_devices_matches_single_device(tmp_path):
    # Logical devices must exist before TensorFlow starts, so both runs go to a fresh process.
    script = (
        "import json, sys, kerasflow\n"
        "from kerasflow.training import distribute\n"
        "out = {}\n"
        "for name, extra in (('mirrored', ['train.strategy=mirrored', 'train.cpu_replicas=2']),\n"
        "                    ('single', ['train.strategy=default'])):\n"
        "    cfg = kerasflow.load_config(None, sys.argv[1:] + [f'experiment.name={name}'] + extra)\n"
        "    result = kerasflow.train(cfg)\n"
        "    out[name] = [result.test_metrics['test_accuracy'],\n"
        "                 distribute.setup(cfg.train).num_replicas]\n"
        "print('RESULT', json.dumps(out))\n"
    )
    args = [
        f"experiment.work_dir={tmp_path / 'runs'}",
        "tracking.enabled=false",
        "train.explain_images=0",
        "train.verbose=0",
        # The digits config, shortened: 8x8 images, a narrower CNN, 10 epochs, same global batch.
        "data.image_size=[8,8]",
        "model.params.width=16",
        "train.epochs=10",
        "data.batch_size=64",
        "compile.optimizer.learning_rate=0.003",
        "train.early_stopping.enabled=false",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    (mirrored_acc, mirrored_replicas), (single_acc, single_replicas) = (
        out["mirrored"],
        out["single"],
    )
    assert (mirrored_replicas, single_replicas) == (2, 1)
    assert single_acc >= 0.9
    # Not equal: each replica's BatchNormalization sees half the batch (Keras' default
    # synchronized=False), so the two runs train differently. 0.02 is 7 of 359 test
    # images, about this 10-epoch run's seed-to-seed spread (measured: 0.961 vs 0.964
    # with a fresh iterator per epoch, 0.950 vs 0.961 with the repeated training set).
    assert abs(mirrored_acc - single_acc) <= 0.02, out


@pytest.mark.slow
def test_multi_worker_job_survives_a_killed_worker(tmp_path, job, monkeypatch):
    """Two workers train; one is SIGKILLed; the restarted job resumes, logs one run, registers once."""
    epochs = 6
    uri, sets = _store_sets(tmp_path, "mwkill", epochs=epochs)
    cfg = kerasflow.load_config(None, [*sets, "train.strategy=multi_worker"])
    backup = work_dir_for(cfg) / BACKUP_DIR
    workers = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    j = job(sets)
    j.start("first", workers)
    chief_proc, worker_proc = j.procs
    deadline = time.time() + 300
    while _saved_epoch(backup) < 2 and time.time() < deadline and chief_proc.poll() is None:
        time.sleep(0.05)
    killed_after = _saved_epoch(backup)
    assert worker_proc.poll() is None, j.log(1)[-3000:]
    worker_proc.send_signal(signal.SIGKILL)
    worker_proc.wait()
    assert 2 <= killed_after < epochs, j.log(0)[-3000:]

    # The survivor does not hang: it exits with one clear error line.
    code = chief_proc.wait(timeout=180)
    survivor = j.log(0)
    assert code == 1, survivor[-3000:]
    errors = [line for line in survivor.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, survivor[-3000:]
    assert errors[0].startswith(
        "Error: Multi-worker training stopped: a peer worker stopped answering"
    )
    assert "Restart every worker" in errors[0]
    # No kerasflow traceback (Python may still report a thread pool it fails to close at exit).
    assert "kerasflow/" not in "".join(
        line for line in survivor.splitlines() if line.startswith('  File "')
    )

    # The cluster manager restarts every worker: the job resumes after the last backup.
    resume_point = _saved_epoch(backup)
    j.start("second", workers)
    codes = j.wait(timeout=400)
    assert codes == [0, 0], j.log(0)[-3000:] + j.log(1)[-3000:]
    chief, worker = j.log(0), j.log(1)
    assert "worker 0 of 2 (chief)" in chief and "worker 1 of 2" in worker
    assert "Training finished on this worker" in worker and "MLflow run:" not in worker
    # Both workers report the same metrics: they are summed over every replica of the job.
    assert _epoch_metrics(chief, epochs) == _epoch_metrics(worker, epochs) != ""
    assert f"resuming after epoch {resume_point} " in chief
    assert f"Resumed from epoch {resume_point}." in chief
    ran = [int(x.split("epoch ")[1].split("/")[0]) for x in chief.splitlines() if " epoch " in x
           and f"/{epochs} (" in x]  # fmt: skip
    assert ran == list(range(resume_point + 1, epochs + 1)), chief[-3000:]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mwkill")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")]
    assert sorted(steps) == list(range(1, epochs + 1))
    for key in ("accuracy", "val_loss", "val_accuracy"):
        assert len(client.get_metric_history(runs[0].info.run_id, key)) == epochs, key
    assert runs[0].data.metrics["test_accuracy"] > 0.5
    versions = client.search_model_versions("name='mwkill-model'")
    assert [str(v.version) for v in versions] == ["1"]
    assert versions[0].run_id == runs[0].info.run_id
    # Only the chief writes the shared work dir; the worker keeps its files apart.
    work = backup.parent
    assert json.loads((work / "state.json").read_text())["status"] == "finished"
    assert sorted(p.name for p in (work / "workers").iterdir()) == ["worker-1"]
    assert _saved_epoch(work / "workers" / "worker-1" / BACKUP_DIR) == epochs

    # Through kerasflow, with the store named: another test may have set MLflow's global URI.
    from kerasflow.tracking.model_registry import load_model

    model = load_model("models:/mwkill-model/1", uri)
    prepared = pipelines.prepare(cfg.data, cfg.experiment.seed)
    images = next(iter(prepared.dataset("test", training=False)))[0].numpy()[:8]
    probs = model.predict(images, verbose=0)
    assert probs.shape == (8, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
