"""One process per run: ``train.lock`` in the run's work folder, held while ``train()`` runs.

The lock is an ``flock`` on the file (the kernel drops it when the holder
exits, however it exits), and the file says who holds it (pid, host, start
time), so that a second ``kerasflow train`` of the same config refuses at once
and names the holder instead of sharing the backup, the checkpoints and the
MLflow run. A lock left by a process that died (SIGKILL, a crash) is taken
over with a notice. The file itself stays (emptied on release): removing it
would let two late starters lock two different files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from kerasflow.errors import BusyError

log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"


def _holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace")
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def describe(holder: dict) -> str:
    """``pid 123 on host-a (started 2026-12-01 21:00:00 UTC)``, or a plain phrase if unknown."""
    if not holder:
        return "another process (no details in the lock file)"
    started = holder.get("started")
    when = (
        time.strftime(" (started %Y-%m-%d %H:%M:%S UTC)", time.gmtime(started))
        if isinstance(started, int | float)
        else ""
    )
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{when}"


@contextlib.contextmanager
def hold(work: Path) -> Iterator[Path]:
    """Hold the work folder's lock for the ``with`` block; yields the lock file's path.

    Raises:
        BusyError: a live process holds it (the message names that process).
    """
    work.mkdir(parents=True, exist_ok=True)
    path = work / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            deadline = time.monotonic() + 2.0
            while not holder and time.monotonic() < deadline:
                # the holder writes its details just after it takes the lock
                time.sleep(0.05)
                holder = _holder(fd)
            raise BusyError(
                f"The run folder {work} is in use by {describe(holder)}: a run of this "
                "config is training now. Wait for it to end, or stop that process (it resumes "
                "when run again); to train a second copy at the same time, give it another "
                "experiment.work_dir."
            ) from None
        stale = _holder(fd)
        if stale:
            log.warning(
                "taking over the run folder %s from %s, which ended without releasing it",
                work,
                describe(stale),
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": int(time.time())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released cleanly: the next holder has nothing to take over
    finally:
        os.close(fd)  # drops the flock
