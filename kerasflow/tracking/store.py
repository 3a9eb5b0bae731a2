"""Where runs land: the default local MLflow store and the commands that open it.

Default: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts under
``<cwd>/mlruns/artifacts``. ``tracking.uri`` in the config wins, then the
``MLFLOW_TRACKING_URI`` environment variable, then the default.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

STORE_DIR = "mlruns"
DB_NAME = "mlflow.db"


def default_store_dir(cwd: str | os.PathLike | None = None) -> Path:
    return Path(cwd or os.getcwd()).resolve() / STORE_DIR


def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    return f"sqlite:///{default_store_dir(cwd) / DB_NAME}"


def default_artifact_root(cwd: str | os.PathLike | None = None) -> str:
    return (default_store_dir(cwd) / "artifacts").as_uri()


def resolve_tracking_uri(configured: str | None = None) -> str:
    """The tracking URI to use: config, then $MLFLOW_TRACKING_URI, then the local default."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def existing_tracking_uri(configured: str | None = None) -> str | None:
    """The tracking URI :func:`resolve_tracking_uri` would use, or None for a local SQLite
    store that does not exist yet (for look-ups that must not create one)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    return uri


def artifact_root_for(uri: str) -> str | None:
    """Artifact location for new experiments in a local SQLite store (beside the database)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None  # a tracking server decides


def _mlflow_cli() -> list[str]:
    return [sys.executable, "-m", "mlflow"]


def subprocess_env() -> dict[str, str]:
    """Environment for MLflow child processes: this interpreter's bin first on PATH.

    MLflow starts ``uvicorn``/``gunicorn`` by name, so they must resolve to the
    same environment.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def ui_command(port: int = 5000, host: str = "127.0.0.1", uri: str | None = None) -> list[str]:
    """The ``mlflow ui`` command line for this store."""
    uri = resolve_tracking_uri(uri)
    # One worker: a personal UI needs no pool, and it starts much faster on a busy machine.
    cmd = [
        *_mlflow_cli(),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    root = artifact_root_for(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    return cmd


def server_command(
    port: int = 5000,
    host: str = "127.0.0.1",
    backend_uri: str | None = None,
    artifacts_destination: str | None = None,
    workers: int | None = None,
) -> list[str]:
    """An ``mlflow server`` command line for a team tracking server (artifacts proxied)."""
    uri = resolve_tracking_uri(backend_uri)
    dest = artifacts_destination or artifact_root_for(uri) or default_artifact_root()
    cmd = [
        *_mlflow_cli(),
        "server",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        dest,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    return cmd
