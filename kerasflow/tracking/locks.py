"""Locks that serialise kerasflow processes sharing one local MLflow store.

A registration reads the champion, registers a version and moves the alias:
three store calls that must not interleave with another process's, or two
processes can both be told "champion" and the worse model keep the alias.
For a local store (``sqlite:///...`` or a folder) an exclusive ``flock`` on
``registry.lock`` beside the database makes the three one step. A tracking
server (``http(s)://``) has no shared folder: there the registry re-checks
the alias after moving it (see :func:`kerasflow.tracking.model_registry.register`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from kerasflow.errors import TrackingError

REGISTRY_LOCK = "registry.lock"


def registry_lock_path(uri: str) -> Path | None:
    """``registry.lock`` beside a local store's database or folder; None for a tracking server."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent / REGISTRY_LOCK
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:")).resolve() / REGISTRY_LOCK
    if "://" not in uri:
        return Path(uri).resolve() / REGISTRY_LOCK
    return None


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 300.0, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (made if missing) while the block runs.

    The lock dies with its process, so a killed holder never leaves a stale lock.
    The file holds the holder's pid, for a person looking at a hung process.

    Raises:
        TrackingError: the lock is not free within ``timeout`` seconds (names the file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = path.read_text().strip() or "unknown"
                    raise TrackingError(
                        f"{path} is still locked after {timeout:.0f} s (held by pid {holder}). "
                        "Another kerasflow process is registering a model in this store; wait "
                        "for it, or end it if it hangs."
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def registry_lock(uri: str) -> Iterator[bool]:
    """Serialise registrations in the store at ``uri``; yields whether a lock is held."""
    path = registry_lock_path(uri)
    if path is None:
        yield False
        return
    with file_lock(path):
        yield True
