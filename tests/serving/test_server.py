"""``kerasflow serve``: a real server process; parity of three prediction paths; bad requests."""

from __future__ import annotations

import base64
import http.client
import json
import time

import numpy as np
import pytest

from tests.pipelines.test_scan import forged_size, png_bomb
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
        ({"inputs": {"tensor": [[[[float("nan")] * 1] * 8] * 8]}}, 400, "The JSON holds NaN"),
        ({"inputs": {"tensor": [[[[float("inf")] * 1] * 8] * 8]}}, 400, "The JSON holds Infinity"),
        (
            {"inputs": {"tensor": [[[[1.0]] * 8] * 8]}},
            400,
            "'tensor' must have shape N x 16 x 16 x 1",
        ),
        ({"inputs": {"tensor": [[[[-5.0]] * 16] * 16]}}, 400, "'tensor' values must be pixels"),
        ({"inputs": {"images": [[["a", "b"]]]}}, 400, "'images' must be a batch"),
        ({"inputs": {"images": [[[True]]]}}, 400, "'images' must be a batch"),
        ({"inputs": {"b64": [7]}}, 400, "b64[0] must be a base64 string"),
        ({"inputs": {"b64": "x", "images": []}}, 400, "Unknown or extra input field(s)"),
        ({"instances": [{"b64": "aGk="}], "params": {}}, 400, "Unknown or extra top-level"),
        ([1, 2, 3], 400, "The JSON body must be an object"),
    ],
    ids=[
        "corrupt-png",
        "non-image",
        "bad-base64",
        "empty-batch",
        "wrong-field",
        "bad-pixels",
        "wrong-key",
        "nan-tensor",
        "inf-tensor",
        "tensor-shape",
        "tensor-range",
        "string-pixels",
        "bool-pixels",
        "number-as-b64",
        "two-fields",
        "extra-top-level-key",
        "array-body",
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


def _raw(server, body, headers: dict, chunked: bool = False) -> tuple[int, dict, str | None]:
    """One request through http.client (the client the issue saw a reset with)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", "/invocations", body=body, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.getheader("X-Request-Id")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b'{"instances": []}', {}, 400, "The request has no Content-Type header"),
        (b"hello", {"Content-Type": "text/plain"}, 415, "Content-Type 'text/plain'"),
        (
            b"[" * 1000 + b"]" * 1000,
            {"Content-Type": "application/json"},
            400,
            "The JSON is nested 1000",
        ),
        (
            b'{"inputs": {"tensor": [[[[1e999' + b"]" * 4 + b"}}",
            {"Content-Type": "application/json"},
            400,
            "'tensor' must have shape",
        ),
        (
            b'{"inputs": {"tensor": '
            + json.dumps([[[[0.0]] * 16] * 16]).encode().replace(b"0.0", b"1e999", 1)
            + b"}}",
            {"Content-Type": "application/json"},
            400,
            "'tensor' must not hold NaN or infinite",
        ),
        (b'{"a": ', {"Content-Type": "application/json"}, 400, "The body is not valid JSON"),
        (b"", {"Content-Type": "image/png"}, 400, "The request body is empty"),
        (b"GIF89a-not-really", {"Content-Type": "image/gif"}, 400, "b64[0] is not a decodable"),
    ],
    ids=[
        "no-content-type",
        "text-plain",
        "deep-json",
        "short-inf",
        "inf-literal",
        "bad-json",
        "empty-image",
        "bad-gif",
    ],
)
def test_protocol_errors_are_4xx_with_a_request_id(server, body, headers, status, message):
    got, answer, request_id = _raw(server, body, headers)
    assert got == status, answer
    assert answer["message"].startswith(message) and len(answer["message"]) < 600
    assert request_id and answer["request_id"] == request_id


def test_image_body_answers_like_b64(server, image_files):
    _, paths = image_files
    status, body, request_id = _raw(server, paths[0].read_bytes(), {"Content-Type": "image/png"})
    assert status == 200 and len(request_id) == 16
    _, same = _invoke(server, {"instances": [{"b64": _b64(paths[0].read_bytes())}]})
    assert body == same


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_over_size_body_gets_413_not_a_reset(server, chunked):
    """http.client sends the whole body before it reads; the server drains it and answers 413."""
    size = int(MAX_PAYLOAD_MB * 1e6) * 20
    body = (b"x" * 100_000 for _ in range(size // 100_000)) if chunked else b"x" * size
    headers = {"Content-Type": "application/json"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    status, answer, _ = _raw(server, body, headers, chunked=chunked)
    assert status == 413 and "at most 0.2 MB" in answer["message"]
    assert get(server.url + "/ping")[0] == 200


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        with open(f"/proc/{pid}/status") as fh:
            line = next(x for x in fh if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024


def test_png_bomb_is_refused_fast_with_small_memory_growth(server, image_files, record_property):
    bomb = png_bomb(20000, 20000)  # 400 megapixels in about 48 KB
    assert len(bomb) < 100_000
    payload = {"instances": [{"b64": _b64(bomb)}]}
    _invoke(server, {"instances": [{"b64": _b64(image_files[1][0].read_bytes())}]})  # warm
    before = _rss(server.proc.pid)
    start = time.perf_counter()
    status, body = _invoke(server, payload)
    seconds = time.perf_counter() - start
    grown = _rss(server.proc.pid) - before
    record_property("bomb_seconds", round(seconds, 4))
    record_property("bomb_rss_growth_mb", round(grown / 1e6, 2))
    assert status == 413, body
    assert "20000x20000 = 400.0 megapixels, over the budget of 40 megapixels" in body["message"]
    assert seconds < 1.0 and grown < 200e6
    status, body = _invoke(server, {"instances": [{"b64": _b64(image_files[1][0].read_bytes())}]})
    assert status == 200 and body["predictions"][0]["class_name"] in [str(i) for i in range(10)]


def test_a_short_image_with_a_forged_size_gets_400_before_decoding(server, image_files):
    """The fuzz suite's 740-byte JPEG declared 9000 x 4000: decoded, it was 36 MP of grey."""
    jpeg = next(p for p in image_files[1] if p.suffix == ".jpg").read_bytes()
    forged = forged_size(jpeg, 9000, 4000)
    before = _rss(server.proc.pid)
    start = time.perf_counter()
    status, body = _invoke(server, {"instances": [{"b64": _b64(jpeg)}, {"b64": _b64(forged)}]})
    seconds = time.perf_counter() - start
    assert status == 400, body
    assert body["message"] == (
        f"b64[1] is not a decodable JPEG image: the file is {len(forged)} bytes, but its JPEG "
        "header declares 9000x4000 pixels, which no file under 70313 bytes can encode (a "
        "truncated file, or a forged header). Send the whole file."
    )
    assert seconds < 1.0 and _rss(server.proc.pid) - before < 50e6
    raw = _raw(server, forged, {"Content-Type": "image/jpeg"})
    assert raw[0] == 400 and "forged header" in raw[1]["message"]


def test_batches_over_the_pixel_budget_or_max_batch_get_413(server, image_files):
    small = _b64(image_files[1][0].read_bytes())
    status, body = _invoke(server, {"instances": [{"b64": small}] * 257})
    assert status == 413 and body["message"].startswith("The request holds 257 images")
    assert "--max-batch" in body["message"]
    status, body = _invoke(server, {"instances": [{"b64": small}] * 256})
    assert status == 200 and len(body["predictions"]) == 256
    seven = _b64(png_bomb(2000, 3000))  # 6 MP each: seven pass one by one, not together
    status, body = _invoke(server, {"instances": [{"b64": seven}] * 7})
    assert status == 413 and "42.0 megapixels together (through b64[6])" in body["message"]
