"""Network helpers of the subprocess tests: free loopback ports and waiting for an HTTP answer."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free at the time of the call (held together, then released)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    """One loopback port free at the time of the call."""
    return free_ports(1)[0]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 240) -> bytes:
    """The body of ``url`` once it answers 200, polling every 0.5 s.

    Fails at once, with the tail of its output when it was captured, if ``proc``
    exits first; fails after ``timeout`` seconds naming the URL.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else b""
            tail = out.decode(errors="replace")[-2000:] if isinstance(out, bytes) else out[-2000:]
            raise AssertionError(f"exited {proc.returncode} before {url} answered:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return response.read()
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:g} s")


class ServerProcess:
    """A server child process on ``port`` (its output in ``log_path``), stopped with SIGTERM.

    Shared by the serving tests and ``benchmarks/serving_latency.py``.
    """

    def __init__(self, cmd: list[str], port: int, log_path: Path, env: dict | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 240.0, path: str = "/ping") -> None:
        """Return once ``path`` answers 200; fail with the log's tail if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n"
                    f"{self.log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"server did not answer {path}:\n{self.log_path.read_text(errors='replace')[-3000:]}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; closes the log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
