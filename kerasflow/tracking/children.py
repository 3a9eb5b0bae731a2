"""Child processes that outlive no one: ``kerasflow ui`` and ``kerasflow server`` run MLflow's.

``mlflow ui`` / ``mlflow server`` start uvicorn or gunicorn workers of their
own. Killing only the process kerasflow started leaves those holding the
port, so the child runs in its own process group and SIGTERM or SIGINT to
kerasflow is passed to the whole group, which is then waited for (and killed
if it does not stop within a grace period).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C does, so ``finally`` blocks run."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` instead of ending the process.

    Python's default for SIGTERM ends the process without running ``finally``
    blocks or ``atexit`` hooks, which leaves temporary folders behind.
    """

    def raise_terminated(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed hands; nothing of ours to stop
        return False
    return True


def _end_group(pgid: int, grace: float) -> None:
    """Processes of the group still alive (workers of a finished child): SIGTERM, then SIGKILL."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.1)
    log.warning(
        "processes of group %d did not stop %.0f s after SIGTERM; killing them", pgid, grace
    )
    _signal_group(pgid, signal.SIGKILL)


def run_child(cmd: list[str], env: dict[str, str] | None = None, grace: float = 20.0) -> int:
    """Run ``cmd`` in its own process group until it ends; forward SIGTERM/SIGINT to the group.

    After a forwarded signal the group has ``grace`` seconds to stop, then it is
    killed; processes of the group that outlive the child are ended too.
    Returns the child's exit code, or ``128 + signal`` after a forwarded signal
    (as a shell reports it).
    """
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        _signal_group(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                code = proc.wait(timeout=grace if received else None)
                break
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop %.0f s after a signal; killing it", cmd[0], grace)
                _signal_group(proc.pid, signal.SIGKILL)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:  # an error of our own: the child must not outlive us
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        _end_group(proc.pid, grace)
    return 128 + received[0] if received else code
