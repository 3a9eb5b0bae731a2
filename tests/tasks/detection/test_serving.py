"""Export of a detector and an HTTP request returning boxes in input-image pixels.

The detector here is hand-wired, not trained: its heatmap is the mean of the red
channel over each 4 x 4 cell (a white 4 x 4 blob on one cell makes one peak),
its offsets are 0.5 and its size 4 x 4 cells. So an image with a blob gives
one box of 16 x 16 model pixels around the blob, which lets the test check
the whole path: decode, letterbox, model, peak, NMS, undoing the letterbox.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasflow.config import build_config
from kerasflow.errors import ServingError
from kerasflow.serving.export import export_saved_model
from kerasflow.serving.simple_server import make_server
from tests.pipelines.test_scan import forged_size


def export_detection(model, out, data_config, names, version=None):
    contract = {"task": "detection", "class_names": names}
    return export_saved_model(model, out, data_config, contract, version=version)


def blob_detector():
    inputs = keras.Input((64, 64, 3), name="blob_input")
    x = keras.layers.AveragePooling2D(4, name="blob_pool")(inputs)
    conv = keras.layers.Conv2D(5, 1, name="blob_head")
    out = conv(x)
    kernel = np.zeros((1, 1, 3, 5), np.float32)
    kernel[0, 0, 0, 0] = 20.0  # heat logit = 20 * red - 10
    conv.set_weights([kernel, np.array([-10.0, 0.5, 0.5, 4.0, 4.0], np.float32)])
    return keras.Model(inputs, out, name="blob")


def png(h, w, top, left, size=4) -> bytes:
    image = np.zeros((h, w, 3), np.uint8)
    image[top : top + size, left : left + size] = 255
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    cfg = build_config(
        {"data": {"image_size": [64, 64], "channels": 3, "resize": "pad", "normalize": "unit"}}
    )
    return export_detection(blob_detector(), out, cfg.data, ["blob"], version=3)


def test_export_layout_and_signature_boxes_in_input_pixels(exported):
    assert exported.path.name == "3" and (exported.path / "saved_model.pb").is_file()
    meta = json.loads((exported.path / "assets" / "kerasflow.json").read_text())
    assert meta["task"] == "detection" and meta["class_names"] == ["blob"]
    loaded = tf.saved_model.load(str(exported.path))
    assert set(loaded.signatures) == {"serving_default", "predict_images", "predict_tensor"}
    # A 32 x 64 image letterboxes at scale 1 into rows 16..48: the blob at rows 12..16,
    # cols 36..40 lands on cell (7, 9); the box is 16 x 16 around (30, 38) model pixels,
    # i.e. rows 6..22 and cols 30..46 of the input image.
    out = loaded.signatures["serving_default"](
        image_bytes=tf.constant([png(32, 64, 12, 36), png(64, 64, 28, 36)])
    )
    assert out["num_detections"].numpy().tolist() == [1, 1]
    np.testing.assert_allclose(out["boxes"].numpy()[0, 0], [6, 30, 22, 46], atol=1e-3)
    np.testing.assert_allclose(out["boxes"].numpy()[1, 0], [22, 30, 38, 46], atol=1e-3)
    assert out["class_names"].numpy()[0, :2].tolist() == [b"blob", b""]
    assert out["class_ids"].numpy()[0, :2].tolist() == [0, -1]
    assert out["scores"].numpy()[0, 0] > 0.99
    # A 128 x 64 image is scaled by 0.5: boxes scale back up by 2.
    pixels = np.zeros((1, 128, 64, 3), np.uint8)
    pixels[0, 56:64, 24:32] = 255  # -> model rows 28..32, cols 16 + 12 .. 16 + 16: cell (7, 7)
    out = loaded.signatures["predict_images"](images=tf.constant(pixels))
    # model box rows/cols 22..38 -> minus the 16-pixel left pad, times 2.
    np.testing.assert_allclose(out["boxes"].numpy()[0, 0], [44, 12, 76, 44], atol=1e-3)
    # Near the edge the box is clipped to the image.
    pixels = np.zeros((1, 128, 64, 3), np.uint8)
    pixels[0, 56:64, 8:16] = 255
    out = loaded.signatures["predict_images"](images=tf.constant(pixels))
    np.testing.assert_allclose(out["boxes"].numpy()[0, 0], [44, 0, 76, 28], atol=1e-3)


def test_export_rejects_a_mismatched_config(tmp_path):
    cfg = build_config({"data": {"image_size": [32, 32], "channels": 3}})
    with pytest.raises(ServingError, match="input shape"):
        export_detection(blob_detector(), tmp_path, cfg.data, ["blob"])
    cfg = build_config({"data": {"image_size": [64, 64], "channels": 3}})
    with pytest.raises(ServingError, match="predicts 1 classes but the config names 2"):
        export_detection(blob_detector(), tmp_path, cfg.data, ["a", "b"])


def _post(url, body, content_type):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_request_returns_boxes_as_json(exported):
    server = make_server(
        exported.path.parent,
        port=0,
        max_payload_mb=0.01,
        digest=exported.digest,
        max_image_pixels=3 * 64 * 64,
        max_batch=2,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/invocations"
    try:
        status, body = _post(url, png(32, 64, 12, 36), "image/png")
        assert status == 200
        (pred,) = body["predictions"]
        assert pred["class_names"] == ["blob"] and pred["class_ids"] == [0]
        assert pred["boxes"] == [[6.0, 30.0, 22.0, 46.0]]
        b64 = base64.b64encode(png(64, 64, 28, 36)).decode()
        status, body = _post(url, json.dumps({"b64": [b64, b64]}).encode(), "application/json")
        assert status == 200 and len(body["predictions"]) == 2
        assert body["predictions"][1]["boxes"] == [[22.0, 30.0, 38.0, 46.0]]
        status, body = _post(url, b"not an image", "image/png")
        assert status == 400 and "is not a decodable JPEG, PNG, BMP or GIF" in body["error"]
        # The same request limits as `kerasflow serve` (its Predictor): batch and pixel budget.
        status, body = _post(url, json.dumps({"b64": [b64] * 3}).encode(), "application/json")
        assert status == 413 and body["error"].startswith("The request holds 3 images")
        bomb = forged_size(png(64, 64, 28, 36), 4000, 4000)
        status, body = _post(url, bomb, "image/png")
        assert status == 413 and "4000x4000 = 16.0 megapixels" in body["error"]
        status, body = _post(url, b'{"x": 1}', "application/json")
        assert status == 400 and "b64" in body["error"]
        status, body = _post(url, b"0" * 20000, "image/png")
        assert status == 413
    finally:
        server.shutdown()
        server.server_close()
