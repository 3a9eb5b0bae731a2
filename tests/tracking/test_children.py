"""``kerasflow ui`` and ``kerasflow server`` pass SIGTERM on to MLflow's processes and wait for them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from kerasflow.tracking.children import run_child
from tests.net import free_port, wait_http


def _listeners(port: int) -> list[int]:
    """Pids of processes listening on ``port``."""
    return [
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    ]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ui", "server"])
def test_sigterm_stops_mlflow_children_and_frees_the_port(tmp_path, command):
    port = free_port()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store_flag = "--uri" if command == "ui" else "--backend-store-uri"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasflow", command, "--port", str(port), store_flag, store],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=600)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "MLflow runs in child processes"
        assert set(_listeners(port)) <= {c.pid for c in children}
        proc.send_signal(signal.SIGTERM)  # to kerasflow alone, as docker stop does
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == []
        assert _listeners(port) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in psutil.Process().children(recursive=True):
            child.kill()


def test_run_child_forwards_the_signal_to_the_group_and_returns_128_plus_it(tmp_path):
    """A child that starts a grandchild: SIGTERM to us ends both, and the exit code says why."""
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time; "
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "open(sys.argv[1], 'w').write(f'{os.getpid()} {g.pid}'); time.sleep(120)"
    )
    runner = (
        "import sys; from kerasflow.tracking.children import run_child; "
        f"sys.exit(run_child([sys.executable, '-c', {script!r}, {str(pids)!r}], grace=5))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", runner], env=env)
    deadline = time.monotonic() + 120
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    child, grandchild = (psutil.Process(int(p)) for p in pids.read_text().split())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    gone, alive = psutil.wait_procs([child, grandchild], timeout=10)
    assert alive == []


def test_run_child_returns_the_exit_code_of_a_child_that_ends_by_itself():
    assert run_child([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
