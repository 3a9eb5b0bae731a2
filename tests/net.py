"""Network helpers of the subprocess tests: free loopback ports and waiting for an HTTP answer."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


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
