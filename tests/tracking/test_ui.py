import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.net import free_port, wait_http


@pytest.mark.slow
def test_kerasflow_ui_serves_this_store_on_loopback(digits_result, tracking_uri):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasflow", "ui", "--port", str(port), "--uri", tracking_uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = (
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=digits"
        )
        body = wait_http(url, proc).decode()
        assert '"name": "digits"' in body or '"name":"digits"' in body
        # Bound to loopback only (ss is part of iproute2 on these machines).
        assert shutil.which("ss"), "ss (iproute2) is needed to check the bound address"
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        lines = [ln for ln in listening.splitlines() if f":{port} " in ln]
        assert lines and all("127.0.0.1" in ln for ln in lines), lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
