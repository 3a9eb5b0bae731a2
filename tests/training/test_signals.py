"""A Ctrl-C or SIGTERM is never lost, even when Python drops its first raise."""

from __future__ import annotations

import contextlib
import gc
import signal

import pytest

from kerasflow.errors import Terminated
from kerasflow.training.signals import check, stop_on_signals


@contextlib.contextmanager
def python_sigint_handler():
    """Python's own SIGINT handler (pytest-xdist workers ignore SIGINT)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class _SignalInFinalizer:
    """Sends ``signum`` to this process from ``__del__``: the handler runs there, and Python
    prints its exception as "Exception ignored in ..." and drops it (what SQLAlchemy's
    ``InstanceState._cleanup`` did to a SIGTERM mid-epoch)."""

    def __init__(self, signum):
        self.signum = signum

    def __del__(self):
        signal.raise_signal(self.signum)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)]
)
def test_a_stop_dropped_in_a_finalizer_is_raised_at_the_next_check(signum, raised):
    reached = []
    with python_sigint_handler(), pytest.raises(raised) as info, stop_on_signals():
        _SignalInFinalizer(signum)  # dropped at once: the raise is lost in __del__
        gc.collect()
        reached.append("after the lost raise")  # Python went on, as if nothing happened
        check()
    assert reached == ["after the lost raise"]
    assert isinstance(info.value, KeyboardInterrupt)  # what marks the run KILLED
    check()  # outside the block, nothing is pending


def test_handlers_are_restored_and_an_ignored_sigint_stays_ignored():
    before_term = signal.getsignal(signal.SIGTERM)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shell's background job
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not before_term
        assert signal.getsignal(signal.SIGTERM) is before_term
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_second_sigterm_is_ignored_and_a_second_ctrl_c_raises_at_once():
    with python_sigint_handler():
        with pytest.raises(Terminated), stop_on_signals():
            try:
                signal.raise_signal(signal.SIGTERM)
            except Terminated:
                signal.raise_signal(signal.SIGTERM)  # while the run is being marked KILLED
                raise
        with pytest.raises(KeyboardInterrupt, match="again"), stop_on_signals():
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                signal.raise_signal(signal.SIGINT)
