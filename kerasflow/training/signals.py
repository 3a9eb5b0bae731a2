"""SIGTERM handled like Ctrl-C while a run trains.

``docker stop``, Kubernetes and Slurm send SIGTERM and wait a grace period
before SIGKILL. Python's default is to die at once, which leaves the MLflow
run ``RUNNING``; :func:`sigterm_as_interrupt` raises
:class:`~kerasflow.errors.Terminated` (a ``KeyboardInterrupt``) instead, so the
epoch in progress is abandoned, the backup of the last finished epoch stays,
and the run is marked ``KILLED`` by the same code as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from kerasflow.errors import Terminated

log = logging.getLogger(__name__)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, the first SIGTERM raises :class:`Terminated`; later ones are ignored.

    Ignoring a second SIGTERM lets the run be marked ``KILLED`` before the
    process exits. Outside the main thread (where Python cannot install
    handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum, frame):
        nonlocal fired
        if fired:
            log.warning("SIGTERM again: already stopping")
            return
        fired = True
        raise Terminated("SIGTERM: training stopped")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
