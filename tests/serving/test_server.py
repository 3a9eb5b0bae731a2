"""``kerasflow serve``: a real server process; parity of three prediction paths; bad requests."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests.serving.conftest import (
    REGISTERED,
    Server,
    get,
    post,
    probabilities,
    server_env,
)

pytestmark = pytest.mark.slow

MAX_PAYLOAD_MB = 0.2  # the run's export.max_payload_mb: small, so the limit is cheap to test


@pytest.fixture(scope="module")
def server(served_run, tracking_uri, tmp_path_factory):
    """One server for the module: the registered champion, through its logged serving model."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = Server(
        [f"models:/{REGISTERED}@champion"],  # the limit comes from the run's export config
        server_env(tracking_uri),
        log,
    )
    try:
        srv.wait()
        yield srv
    finally:
        srv.stop()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _invoke(server, payload) -> tuple[int, dict]:
    status, body = post(server.url + "/invocations", json.dumps(payload).encode())
    return status, json.loads(body)


def test_ping_and_health(server):
    assert get(server.url + "/ping")[0] == 200
    assert get(server.url + "/health")[0] == 200


def test_three_paths_agree_on_100_image_files(server, served_run, export_dir, image_files):
    """Keras model + evaluation pipeline, SavedModel signature on raw bytes, HTTP: within 1e-5."""
    import tensorflow as tf

    from kerasflow import pipelines
    from kerasflow.config import build_config

    root, paths = image_files
    data = served_run.config.to_dict()
    data["data"].update(
        source=str(root),
        split={"train": 0.0, "validation": 0.0, "test": 1.0},
        class_names=[str(i) for i in range(10)],
    )
    cfg = build_config(data)
    prepared = pipelines.prepare(cfg.data, cfg.experiment.seed)
    order = [str(p) for p in np.array(prepared.source.paths)[prepared.indices["test"]]]
    assert sorted(order) == sorted(str(p) for p in paths) and len(order) == 100
    keras_probs = served_run.model.predict(prepared.dataset("test", training=False), verbose=0)

    raw = [open(p, "rb").read() for p in order]  # noqa: SIM115 - tiny files
    loaded = tf.saved_model.load(str(export_dir))
    sig = loaded.signatures["serving_default"](image_bytes=tf.constant(raw))
    saved_probs = sig["probabilities"].numpy()

    status, body = _invoke(server, {"instances": [{"b64": _b64(b)} for b in raw]})
    assert status == 200, body
    http_probs = probabilities(body["predictions"])

    assert keras_probs.shape == saved_probs.shape == http_probs.shape == (100, 10)
    assert np.max(np.abs(keras_probs - saved_probs)) <= 1e-5
    assert np.max(np.abs(keras_probs - http_probs)) <= 1e-5
    assert np.max(np.abs(saved_probs - http_probs)) <= 1e-5
    names = [p["class_name"] for p in body["predictions"]]
    assert names == [str(i) for i in keras_probs.argmax(axis=1)]
    assert names == [n.decode() for n in sig["class_name"].numpy()]
    labels = [int(p.split("/")[-2]) for p in order]
    assert np.mean(np.array(names, dtype=int) == np.array(labels)) > 0.5  # a trained model


def test_pixel_arrays_and_inputs_form(server, image_files, export_dir):
    import tensorflow as tf
    from PIL import Image

    _, paths = image_files
    pngs = [p for p in paths if p.suffix == ".png"][:4]
    pixels = np.stack([np.asarray(Image.open(p)) for p in pngs])  # (4, 8, 8) gray
    status, body = _invoke(server, {"inputs": {"images": pixels.tolist()}})
    assert status == 200, body
    loaded = tf.saved_model.load(str(export_dir))
    raw = [p.read_bytes() for p in pngs]
    expected = loaded.signatures["serving_default"](image_bytes=tf.constant(raw))
    assert np.max(np.abs(probabilities(body["predictions"]) - expected["probabilities"])) <= 1e-5
    status, body = _invoke(server, {"inputs": {"b64": [_b64(b) for b in raw]}})
    assert status == 200 and len(body["predictions"]) == 4
    # The TF Serving form with the input's name.
    status, named = _invoke(server, {"instances": [{"image_bytes": {"b64": _b64(raw[0])}}]})
    assert status == 200
    assert named["predictions"][0]["class_name"] == body["predictions"][0]["class_name"]
    one, four = probabilities(named["predictions"]), probabilities(body["predictions"][:1])
    assert np.max(np.abs(one - four)) <= 1e-5  # batch of 1 vs batch of 4: round-off only


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (
            {"instances": [{"b64": _b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)}]},
            400,
            "b64[0] is not a decodable",
        ),
        (
            {"instances": [{"b64": _b64(b"just some text, not an image")}]},
            400,
            "b64[0] is not a decodable",
        ),
        ({"instances": [{"b64": "not base64 !!"}]}, 400, "b64[0] is not valid base64"),
        ({"inputs": {"b64": []}}, 400, "The batch is empty"),
        ({"inputs": {"pictures": [[1, 2]]}}, 400, "Unknown or extra input field(s) ['pictures']"),
        (
            {"inputs": {"images": [[[300]]]}},
            400,
            "'images' pixel values must be integers in 0..255",
        ),
        ({"something": []}, 400, "instances"),
    ],
    ids=[
        "corrupt-png",
        "non-image",
        "bad-base64",
        "empty-batch",
        "wrong-field",
        "bad-pixels",
        "wrong-key",
    ],
)
def test_bad_requests_get_4xx_and_the_server_stays_up(server, payload, status, message):
    got, body = _invoke(server, payload)
    assert got == status, body
    assert message in body["message"]
    if "instances" not in message:  # kerasflow's message, not prefixed with the request data
        assert body["message"].startswith(message)
    assert len(body["message"]) < 2000  # the payload is not echoed back
    assert get(server.url + "/ping")[0] == 200


def test_payload_over_the_limit_gets_413(server, image_files):
    big = _b64(b"\x00" * int(MAX_PAYLOAD_MB * 1e6))
    status, body = _invoke(server, {"instances": [{"b64": big}]})
    assert status == 413
    assert "at most 0.2 MB" in body["message"] and "--max-payload-mb" in body["message"]
    _, paths = image_files
    status, body = _invoke(server, {"instances": [{"b64": _b64(paths[0].read_bytes())}]})
    assert status == 200 and body["predictions"][0]["class_name"] in [str(i) for i in range(10)]
