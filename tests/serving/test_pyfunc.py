"""The pyfunc serving model and the request-size middleware, without a server process."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_runs_uri_is_exported_on_the_fly_and_served(served_run, tmp_path, export_dir, image_files):
    import tensorflow as tf

    from kerasflow.serving import mlflow_model as tracked
    from kerasflow.serving.server import prepare_serving_model

    uri = served_run.config.tracking.uri
    target = prepare_serving_model(f"runs:/{served_run.run_id}/model", tmp_path, 1.0, uri=uri)
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()
    model = tracked.load_serving_model(target, 1.0)
    _, paths = image_files
    raw = [p.read_bytes() for p in paths[:6]]
    got = model.predict({"b64": np.array([base64.b64encode(b).decode() for b in raw])})
    want = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
        image_bytes=tf.constant(raw)
    )
    probs = np.array([g["probabilities"] for g in got])
    assert np.max(np.abs(probs - want["probabilities"].numpy())) <= 1e-5
    # A SavedModel folder (or its TF Serving base folder) is wrapped, not re-exported.
    wrapped = prepare_serving_model(str(export_dir.parent), tmp_path / "w", 1.0)
    assert wrapped.endswith("serving_model")
    saved = tracked.load_serving_model(wrapped, 1.0)
    assert saved.predict({"images": np.zeros((1, 5, 7), np.int64)})[0]["class_name"] in [
        str(i) for i in range(10)
    ]


def test_payload_limit_without_content_length_reads_and_replays():
    from kerasflow.serving.server import PayloadLimit

    seen = {}

    async def app(scope, receive, send):
        message = await receive()
        seen["body"] = message["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def run(chunks):
        sent = []
        queue = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]

        async def receive():
            return queue.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "headers": [(b"content-type", b"application/json")]}
        asyncio.run(PayloadLimit(app, max_bytes=10)(scope, receive, send))
        return sent

    sent = run([b"abcd", b"efgh"])
    assert sent[0]["status"] == 200 and seen["body"] == b"abcdefgh"
    sent = run([b"abcdef", b"ghijkl"])
    assert sent[0]["status"] == 413
    assert "at most 1e-05 MB" in json.loads(sent[1]["body"])["message"]


def test_foreign_pyfunc_model_is_refused_before_its_code_runs(tmp_path):
    import mlflow

    from kerasflow.errors import ServingError
    from kerasflow.serving.server import build_app

    canary = tmp_path / "canary.txt"
    code = tmp_path / "foreign.py"
    code.write_text(
        "from pathlib import Path\n"
        "from mlflow.models import set_model\n"
        "from mlflow.pyfunc import PythonModel\n"
        f"Path({str(canary)!r}).write_text('ran')\n"
        "class M(PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n"
        "set_model(M())\n"
    )
    mlflow.pyfunc.save_model(str(tmp_path / "foreign"), python_model=str(code), pip_requirements=[])
    canary.unlink(missing_ok=True)  # saving ran it; loading must not
    with pytest.raises(ServingError, match="not a kerasflow serving model"):
        build_app(str(tmp_path / "foreign"))
    assert not canary.exists()
