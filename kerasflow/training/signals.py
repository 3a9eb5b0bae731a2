"""Ctrl-C and SIGTERM stop a training run, and a stop is never lost.

``docker stop``, Kubernetes and Slurm send SIGTERM and wait a grace period
before SIGKILL. Python's default is to die at once, which leaves the MLflow
run ``RUNNING``; within :func:`stop_on_signals` SIGTERM raises
:class:`~kerasflow.errors.Terminated` (a ``KeyboardInterrupt``) instead, so the
epoch in progress is abandoned, the backup of the last finished epoch stays,
and the run is marked ``KILLED`` by the same code as Ctrl-C.

A signal handler's exception is raised wherever the main thread happens to be,
and Python drops it when that is a garbage-collection callback (seen: SQLAlchemy's
``InstanceState._cleanup``, printed as "Exception ignored in ..." while the run
trained on to its last epoch). So the handler also records the stop, and
:func:`check` raises it again at the next safe point: :class:`StopCheck` calls it
after every batch and epoch, and ``finish_run`` before it evaluates and registers.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import keras

from kerasflow.errors import Terminated

log = logging.getLogger(__name__)

_MESSAGES = {signal.SIGTERM: "SIGTERM: training stopped", signal.SIGINT: "Ctrl-C: training stopped"}


class _Stop:
    """The signal that asked to stop, while a :func:`stop_on_signals` block runs."""

    signum: int | None = None


_stop = _Stop()


def _exception(signum: int) -> KeyboardInterrupt:
    message = _MESSAGES[signum]
    return Terminated(message) if signum == signal.SIGTERM else KeyboardInterrupt(message)


def check() -> None:
    """Raise the stop a signal asked for, if one did (again, if its first raise was lost)."""
    if _stop.signum is not None:
        raise _exception(_stop.signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and Ctrl-C (SIGINT) stop the run.

    SIGTERM raises :class:`Terminated`, SIGINT ``KeyboardInterrupt``. A SIGTERM
    after the first stop is ignored, so the run is marked ``KILLED`` before the
    process exits; Ctrl-C pressed again raises at once. A signal the process ignores (``SIG_IGN``: a background job
    of a shell ignores SIGINT) or handles its own way (a SIGINT handler other
    than Python's) is left alone. Outside the main thread (where Python cannot
    install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _stop.signum is not None:
            if signum == signal.SIGINT:  # Ctrl-C pressed again: stop now, whatever is running
                raise KeyboardInterrupt("Ctrl-C again: stopping now")
            log.warning("SIGTERM again: already stopping")
            return
        _stop.signum = signum
        raise _exception(signum)

    previous = {}
    for signum, ours_replaces in (
        (signal.SIGTERM, lambda h: h is not signal.SIG_IGN),
        (signal.SIGINT, lambda h: h is signal.default_int_handler),
    ):
        if ours_replaces(signal.getsignal(signum)):
            previous[signum] = signal.signal(signum, handler)
    _stop.signum = None
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _stop.signum = None


class StopCheck(keras.callbacks.Callback):
    """Raises a stop that a signal asked for after each batch and epoch (see :func:`check`)."""

    def on_train_batch_end(self, batch, logs=None):
        check()

    def on_test_batch_end(self, batch, logs=None):
        check()

    def on_predict_batch_end(self, batch, logs=None):
        check()

    def on_epoch_end(self, epoch, logs=None):
        check()
