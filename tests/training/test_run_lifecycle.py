"""One run per run, whatever happens: signals, a second process, a broken backup, a full disk.

Real ``kerasflow train`` subprocesses on the packaged digits config (a tiny
model) and a real SQLite MLflow store. The full disk and the read-only store are
real too: a small tmpfs mounted over the run's artifact folder and filled while
the model trains (ENOSPC part-way through finishing the run), and a tmpfs store
remounted read-only (these two tests need root to mount, and skip otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import kerasflow
from kerasflow.errors import DataError
from kerasflow.training.fit import work_dir_for

EPOCHS = 10
TINY = [
    "data.image_size=[12,12]",
    "model.params.width=8",
    "model.params.dense_units=16",
    "train.verbose=2",
    "train.explain_images=0",
    "train.early_stopping.enabled=false",
]


def _overrides(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [
        f"experiment.name={name}",
        f"experiment.work_dir={tmp_path / 'runs'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        *TINY,
        *extra,
    ]


def _start(tmp_path: Path, overrides: list[str], log: str, *flags: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "kerasflow", "train", *flags]
    for item in overrides:
        args += ["--set", item]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    out = open(tmp_path / log, "w")  # noqa: SIM115 - the process owns it; closed by _wait
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        # Ctrl-C as at a terminal: a child inherits an ignored SIGINT (pytest-xdist's workers
        # ignore it), and Python then leaves it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    proc.log_path = tmp_path / log
    proc.log_file = out
    return proc


def _wait(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    code = proc.wait(timeout)
    proc.log_file.close()
    return code, proc.log_path.read_text()


def _epochs_done(work: Path) -> int:
    try:
        return json.loads((work / "backup" / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def _wait_for_epoch(proc, work: Path, more_than: int, timeout: float = 400) -> int:
    deadline = time.time() + timeout
    while _epochs_done(work) <= more_than and time.time() < deadline:
        assert proc.poll() is None, proc.log_path.read_text()[-3000:]
        time.sleep(0.05)
    done = _epochs_done(work)
    assert more_than < done < EPOCHS, (done, proc.log_path.read_text()[-3000:])
    time.sleep(0.3)  # into the next epoch's steps
    return done


def _runs(client: MlflowClient, name: str):
    return client.search_runs([client.get_experiment_by_name(name).experiment_id])


@pytest.mark.slow
def test_signals_and_a_second_process_leave_one_run_with_every_epoch_once(tmp_path):
    overrides = _overrides(tmp_path, "life", f"train.epochs={EPOCHS}", "tracking.log_model=false")
    work = work_dir_for(kerasflow.load_config(None, overrides))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    # Two trains of one config started together: one trains, the other refuses at once.
    a, b = _start(tmp_path, overrides, "a.log"), _start(tmp_path, overrides, "b.log")
    deadline = time.time() + 400
    while a.poll() is None and b.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    loser, winner = (a, b) if a.poll() is not None else (b, a)
    code, text = _wait(loser, 60)
    assert code == 2, text[-3000:]
    assert f"is in use by pid {winner.pid} on " in text

    # SIGTERM mid-epoch: the run is KILLED, the backup of the finished epochs stays.
    _wait_for_epoch(winner, work, 0)
    winner.send_signal(signal.SIGTERM)
    code, text = _wait(winner)
    assert code == 143, text[-3000:]
    assert "Terminated (SIGTERM)" in text
    (run,) = _runs(client, "life")
    assert run.info.status == "KILLED"
    after_term = _epochs_done(work)
    assert after_term >= 1

    # Re-run: the same MLflow run continues; a third process started mid-run refuses.
    second = _start(tmp_path, overrides, "second.log")
    _wait_for_epoch(second, work, after_term)
    second.send_signal(signal.SIGSTOP)  # alive and holding the folder while the third starts
    try:
        code, text = _wait(_start(tmp_path, overrides, "third.log"), 300)
        assert code == 2 and f"pid {second.pid}" in text, text[-3000:]
        (run,) = _runs(client, "life")
        assert run.info.status == "RUNNING"
        # Ctrl-C mid-epoch: sent while it is stopped, so it lands mid-epoch however long the
        # third took (on a loaded machine the remaining epochs once finished before a later
        # SIGINT arrived).
        second.send_signal(signal.SIGINT)
    finally:
        second.send_signal(signal.SIGCONT)
    code, text = _wait(second)
    assert code == 130, text[-3000:]
    assert _runs(client, "life")[0].info.status == "KILLED"

    # (SIGKILL mid-epoch, then a re-run: tests/test_cli.py::test_sigkill_mid_training_resumes_same_run.)
    code, text = _wait(_start(tmp_path, overrides, "last.log"))
    assert code == 0, text[-3000:]
    assert "shuffle=True" not in text and "ran out of data" not in text  # Keras' noise
    hint = next(line for line in text.splitlines() if line.startswith("Open the MLflow UI: "))
    command = hint.split(": ", 1)[1].split(" ui")[0]  # works as printed, from tmp_path
    assert shutil.which(command) or (tmp_path / command).is_file(), hint

    (run,) = _runs(client, "life")  # one run, whatever happened
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("simple_cnn-")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, EPOCHS + 1)), (key, steps)
    assert not (work / "backup").exists()
    assert json.loads((work / "state.json").read_text())["status"] == "finished"


def _full_disk_at(folder: Path) -> None:
    """Mount a 64 KiB tmpfs over ``folder`` and fill it: every later write there gets ENOSPC."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs (a real full disk) needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()[:200]}")
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # full
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_full_disk_while_finishing_fails_the_run_and_a_rerun_completes_it(tmp_path):
    overrides = _overrides(tmp_path, "full", "train.epochs=2", "tracking.registered_model=full")
    cfg = kerasflow.load_config(None, overrides)
    uri = cfg.tracking.uri
    client = MlflowClient(uri)
    state_path = work_dir_for(cfg) / "state.json"
    proc = _start(tmp_path, overrides, "full.log")
    deadline = time.time() + 300
    while not state_path.is_file() and time.time() < deadline:
        assert proc.poll() is None, proc.log_path.read_text()[-3000:]
        time.sleep(0.05)
    run_id = json.loads(state_path.read_text())["run_id"]
    artifacts = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    while not (artifacts / "splits.csv").is_file():  # the run's inputs are logged
        assert proc.poll() is None, proc.log_path.read_text()[-3000:]
        time.sleep(0.05)
    try:
        _full_disk_at(artifacts)  # the disk fills up while the model trains
        code, text = _wait(proc)
    finally:
        subprocess.run(["umount", "-l", str(artifacts)], capture_output=True)
        if proc.poll() is None:  # skipped: no tmpfs here
            proc.kill()

    assert code == 2, text[-3000:]
    error = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, text[-3000:]
    assert f"finishing MLflow run {run_id} failed writing to the MLflow store {uri}" in error[0]
    assert str(artifacts) in error[0] and "No space left on device" in error[0]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["kerasflow.error"]
    assert len(client.get_metric_history(run_id, "test_accuracy")) == 1

    result = kerasflow.train(cfg)  # space freed; the same command again (in-process)
    assert result.run_id == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "test_accuracy")) == 1
    assert json.loads((artifacts / "contract.json").read_text())["class_names"][:2] == ["0", "1"]
    versions = client.search_model_versions("name='full'")
    assert [v.run_id for v in versions] == [run_id]
    assert result.registered is not None and result.registered.version == str(versions[0].version)


@pytest.mark.slow
def test_a_truncated_backup_is_named_and_restart_recovers(tmp_path):
    overrides = _overrides(tmp_path, "broken", "train.epochs=2", "tracking.log_model=false")
    cfg = kerasflow.load_config(None, overrides)
    backup = work_dir_for(cfg) / "backup"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text('{"epoch": ')  # killed while writing it
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)  # truncated

    with pytest.raises(DataError) as caught:
        kerasflow.train(cfg)
    message = str(caught.value)
    assert str(backup) in message and "--restart" in message and "\n" not in message
    assert MlflowClient(cfg.tracking.uri).get_experiment_by_name("broken") is None  # no run

    result = kerasflow.train(cfg, restart=True)
    assert result.initial_epoch == 0 and sorted(result.history["loss"]) == [1, 2]
    assert not backup.exists()


def test_a_broken_latest_backup_falls_back_to_the_previous_epoch(tmp_path, caplog):
    from kerasflow.training import backup as backups

    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "training_metadata.json.bkp").write_text('{"epoch": 3, "batch": 0}')
    import h5py

    with h5py.File(folder / "latest.weights.h5.bkp", "w") as f:
        f["w"] = [1.0, 2.0]
    (folder / "training_metadata.json").write_text('{"epoch": 4, "batch": 0}')
    (folder / "latest.weights.h5").write_bytes(
        (folder / "latest.weights.h5.bkp").read_bytes()[:100]
    )
    assert backups.restore_point(folder) == 3
    assert "falling back to the previous epoch's copy (3 epochs done)" in caplog.text
    assert json.loads((folder / "training_metadata.json").read_text())["epoch"] == 3
    assert backups.restore_point(folder) == 3  # now consistent


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path, caplog):
    from kerasflow.errors import BusyError
    from kerasflow.training import run_lock

    # flock is per open file: a second open, even in this process, cannot take it.
    with (
        run_lock.hold(tmp_path),
        pytest.raises(BusyError, match=f"in use by pid {os.getpid()} on "),
        run_lock.hold(tmp_path),
    ):
        pass
    assert (tmp_path / run_lock.LOCK_FILE).read_text() == ""  # released cleanly

    (tmp_path / run_lock.LOCK_FILE).write_text('{"pid": 999999, "host": "h", "started": 0}')
    with run_lock.hold(tmp_path):
        pass
    assert "from pid 999999 on h (started 1970-01-01 00:00:00 UTC)" in caplog.text
    assert BusyError.exit_code == 2


@pytest.mark.parametrize(
    "packaged", sorted(p.name for p in (Path(kerasflow.__file__).parent / "configs").glob("*.yaml"))
)
def test_one_epoch_works_on_every_packaged_config(packaged, caplog):
    from kerasflow.training.compile import build_schedule

    path = Path(kerasflow.__file__).parent / "configs" / packaged
    cfg = kerasflow.load_config(path, ["train.epochs=1"])
    sched = cfg.compile.schedule
    assert sched.name == "constant" or sched.warmup_epochs < 1
    build_schedule(cfg.compile, steps_per_epoch=10, epochs=1)  # raised before the shrink
    if kerasflow.load_config(path).compile.schedule.warmup_epochs >= 1:
        assert "does not fit in train.epochs 1; warming up for 0.5 epochs" in caplog.text


@pytest.mark.parametrize(
    "field", ["experiment.name", "tracking.experiment", "tracking.registered_model", "tune.name"]
)
@pytest.mark.parametrize("bad", ["../../x", "a/b", "a\\\\b", "..", " "])
def test_names_that_become_paths_are_plain(field, bad):
    from kerasflow.errors import ConfigError

    extra = ["tune.tuner=random"] if field.startswith("tune.") else []
    with pytest.raises(ConfigError, match=f"{field}: it becomes a folder name"):
        kerasflow.load_config(None, [*extra, f"{field}={bad!r}"])


@pytest.mark.slow
def test_a_read_only_store_is_one_line_naming_it(tmp_path):
    from kerasflow.tracking import start_tracker
    from kerasflow.tracking.tracker import STORE_ERRORS, store_error

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    tracker = start_tracker("ro", uri=uri)
    try:
        tracker.log_metrics({"loss": 1.0}, step=1)
        # The store's folder becomes read-only under the open store (a read-only bind mount).
        if (
            os.geteuid() != 0
            or subprocess.run(
                ["mount", "--bind", str(store), str(store)], capture_output=True
            ).returncode
        ):
            pytest.skip("a read-only bind mount (a real read-only store) needs root")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(store)], check=True)
        with pytest.raises(STORE_ERRORS) as caught:
            tracker.log_metrics({"loss": 0.5}, step=2)
        error = str(store_error(caught.value, uri, f"MLflow run {tracker.run_id}"))
        assert error.startswith(
            f"MLflow run {tracker.run_id} failed writing to the MLflow store {uri}: "
        )
        assert "unable to open database file. Free disk space or make the store writable" in error
        assert "\n" not in error
        tracker.end_quietly("FAILED", error=error)  # logs that it cannot, does not raise
    finally:
        subprocess.run(["umount", "-l", str(store)], capture_output=True)
        tracker.end("KILLED")  # writable again; leaves no active run for the next test


def test_finetune_phases_shrink_to_fit_a_short_run(caplog):
    path = Path(kerasflow.__file__).parent / "configs" / "digits_finetune.yaml"
    full = kerasflow.load_config(path)
    assert full.train.finetune.freeze_epochs == 5 and full.train.finetune.warmup_epochs == 1
    three = kerasflow.load_config(path, ["train.epochs=3"])
    assert three.train.finetune.freeze_epochs == 2  # phase 2 keeps one epoch
    assert three.train.finetune.warmup_epochs == 0.5  # and its warmup fits inside it
    assert "freezing for 2 epochs instead" in caplog.text
    one = kerasflow.load_config(path, ["train.epochs=1"])
    assert one.train.finetune is None  # no room for two phases: one ordinary epoch
    assert "finetune ignored" in caplog.text
