"""Serving fixtures: one small digits run with ``export:`` on, and 100 test images as files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import overrides_for
from tests.net import ServerProcess, free_port

REGISTERED = "serving-digits"


@pytest.fixture(scope="session")
def served_run(store_dir, tracking_uri):
    """The digits config trained for 3 epochs with ``export:`` on (auto-export, logged, tagged)."""
    import kerasflow

    cfg = kerasflow.load_config(
        None,
        overrides_for(
            store_dir,
            tracking_uri,
            "serving",
            "train.verbose=0",
            "train.epochs=3",
            f"tracking.registered_model={REGISTERED}",
            f"export.dir={store_dir / 'auto_export'}",
            "export.max_payload_mb=0.2",
        ),
    )
    return kerasflow.train(cfg)


@pytest.fixture(scope="session")
def export_dir(served_run, store_dir):
    return store_dir / "auto_export" / "1"


@pytest.fixture(scope="session")
def image_files(served_run, tmp_path_factory):
    """100 test-split digits written as 50 PNG and 50 JPEG files in class folders."""
    return write_digit_files(served_run, tmp_path_factory.mktemp("images"))


def write_digit_files(result, root: Path, jpeg: bool = True) -> tuple[Path, list[Path]]:
    """100 test-split digits of a run, as 50 PNG and 50 JPEG files (or 100 PNG) in class folders."""
    from PIL import Image

    from kerasflow import pipelines

    prepared = pipelines.prepare(result.config.data, result.config.experiment.seed)
    idx = prepared.indices["test"][:100]
    paths = []
    for n, i in enumerate(idx):
        image = prepared.source.images[i][..., 0]
        label = int(prepared.source.labels[i])
        folder = root / str(label)
        folder.mkdir(exist_ok=True)
        fmt, ext = ("PNG", "png") if n % 2 == 0 or not jpeg else ("JPEG", "jpg")
        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(
            buf, fmt, **({"quality": 90} if fmt == "JPEG" else {})
        )
        path = folder / f"{n:03d}.{ext}"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    for label in range(10):  # every class folder exists, so folder names map to class ids
        (root / str(label)).mkdir(exist_ok=True)
    return root, paths


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str, body: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server(ServerProcess):
    """A ``kerasflow serve`` child process on a free loopback port."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        port = free_port()
        cmd = [sys.executable, "-m", "kerasflow", "serve", *args, "--port", str(port)]
        super().__init__(cmd, port, log_path, env)


# Runs `kerasflow predict --json` in a fresh interpreter, then reports what it imported.
_PREDICT_SCRIPT = """
import json, sys
from kerasflow.cli import cli
cli.main(args=["predict", "--json", *sys.argv[1:]], standalone_mode=False)
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def predict_without_tensorflow(artefact: Path, paths: list[str]) -> list[dict]:
    """``kerasflow predict --json ARTEFACT PATHS...`` in a fresh interpreter: one answer per path.

    Fails unless the process imported neither TensorFlow nor Keras.
    """
    done = subprocess.run(
        [sys.executable, "-c", _PREDICT_SCRIPT, str(artefact), *paths],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"tensorflow": False, "keras": False}
    return [json.loads(line) for line in lines[:-1]]


def server_env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def probabilities(predictions: list[dict]) -> np.ndarray:
    return np.array([p["probabilities"] for p in predictions], dtype=np.float64)
