"""Acceptance: after training, the data folder moves away; export, serve, evaluate --data and
explain still give the true class names (the contract travels with the model), and SIGTERM to
``kerasflow serve`` leaves no listener and no ``kerasflow-serve-*`` folder.

One tiny grey-level folder run (8x8 PNGs, classes whose folder order is not their id order),
tracked in a real SQLite store; serve is a real subprocess answering real HTTP.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal

import numpy as np
import psutil
import pytest
from click.testing import CliRunner
from PIL import Image

import kerasflow
from kerasflow.cli import cli
from tests.serving.conftest import Server, post, server_env
from tests.training.test_contract import LEVELS, NAMES, _config, write_grey_folder


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """The trained run, its config, and where its data folder went (the old path is gone)."""
    root = tmp_path_factory.mktemp("travels")
    folder = write_grey_folder(root / "greys")
    cfg = _config(root, folder, "travels")
    result = kerasflow.train(cfg)
    assert result.registered is not None and result.registered.champion
    shutil.move(folder, root / "moved")
    assert not folder.exists()
    return root, cfg, result, root / "moved"


def _invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.mark.slow
def test_export_evaluate_data_and_explain_after_the_folder_moved(moved, monkeypatch):
    root, cfg, result, new_folder = moved
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.tracking.uri)  # as a user's shell would
    model = f"models:/{cfg.registered_model_name}@champion"

    exported = kerasflow.export(model, out=root / "export")
    assert exported.class_names == NAMES
    assets = json.loads((exported.path / "assets" / "kerasflow.json").read_text())
    assert assets["class_names"] == NAMES

    # evaluate --data: all of the new folder, scored with the model's class names.
    output = _invoke(
        "evaluate", model, "--data", str(new_folder), "--out", str(root / "eval"),
    )  # fmt: skip
    assert f"test split: {len(LEVELS) * 30} examples" in output
    report = json.loads((root / "eval" / "evaluation_test.json").read_text())
    assert report["class_names"] == NAMES
    assert report["num_examples"] == 90
    assert report["accuracy"] >= 0.9

    # explain: two inputs with the same file name in different folders -> two labelled overlays.
    apple, mango = new_folder / "apple" / "000.png", new_folder / "mango" / "000.png"
    output = _invoke(
        "explain", model, "--images", str(apple), str(mango), "--out", str(root / "explained"),
    )  # fmt: skip
    overlays = sorted(p.name for p in (root / "explained").iterdir())
    assert len(overlays) == 2, overlays
    assert overlays == ["apple_000_gradcam.png", "mango_000_gradcam.png"]
    assert f"{apple}: predicted apple (" in output
    assert f"{mango}: predicted mango (" in output
    # The label band above the heatmap holds white text on black.
    band = np.asarray(Image.open(root / "explained" / overlays[0]).convert("RGB"))[:22]
    assert band.max() == 255 and (band == 0).mean() > 0.5


@pytest.mark.slow
def test_serve_answers_true_class_names_and_sigterm_leaves_nothing(moved, tmp_path):
    root, cfg, result, new_folder = moved
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**server_env(cfg.tracking.uri), "TMPDIR": str(temp)}
    model = f"models:/{cfg.registered_model_name}@champion"
    server = Server([model], env, tmp_path / "serve.log")
    try:
        server.wait(timeout=600)
        assert len(list(temp.glob("kerasflow-serve-*"))) == 1  # the model, exported for serving
        images = [new_folder / name / "003.png" for name in ("zebra", "apple", "mango")]
        body = {"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in images]}
        status, answer = post(server.url + "/invocations", json.dumps(body).encode())
        assert status == 200, answer
        names = [p["class_name"] for p in json.loads(answer)["predictions"]]
        assert names == ["zebra", "apple", "mango"]

        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=120) == 0
        listening = [
            c
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == server.port
        ]
        assert listening == []
        assert list(temp.glob("kerasflow-serve-*")) == []  # the folder went with the server
    finally:
        server.stop()
