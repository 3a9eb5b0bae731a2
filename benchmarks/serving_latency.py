"""Batch-1 serving latency of kerasflow against MLflow's plain Keras flavor.

Side by side in one run:

* **anchor**: the default digits model logged with MLflow's plain Keras flavor
  (``mlflow.keras.save_model``) and served by
  ``mlflow models serve --env-manager local``; the request carries the
  preprocessed float image, the flavor calls ``model.predict`` per request.
* **kerasflow HTTP**: the same model exported with ``kerasflow export`` and
  served by ``kerasflow serve`` (MLflow's scoring server, pyfunc calling the
  SavedModel signature); the request carries the PNG file's bytes (base64).
* **direct**: the SavedModel's ``serving_default`` signature called in-process
  with the same bytes.
* **LiteRT int8 / ONNX HTTP**: the same model as an int8 LiteRT artefact and a
  float32 ONNX artefact (``kerasflow export --format litert --quantize int8``,
  ``--format onnx``), served by ``kerasflow serve`` with the same PNG request
  (decoded in the server with Pillow, no TensorFlow in the process).

Digits: kerasflow HTTP p50 over the anchor's p50 (target <= 0.25); LiteRT
int8 HTTP p50 over the direct SavedModel call's p50 (target <= 1.0).
MobileNetV2 at 224x224 (JPEG bytes): kerasflow HTTP p50 over the direct call's
p50 (target <= 1.3). Requests per second of ``kerasflow serve`` (digits) with 1
and 8 concurrent clients. Contenders alternate request by request, so load on
a shared machine hits them alike. Latency does not depend on the weights, so
the models keep their initial weights (the digits model is the default
config's architecture).

Prints one JSON object. ``--quick`` runs in under 3 minutes.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tests.net import ServerProcess, free_port  # noqa: E402


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # MLflow starts `uvicorn` by name: this interpreter's bin must come first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def Server(cmd: list[str], port: int, log: Path) -> ServerProcess:  # noqa: N802 - a constructor
    return ServerProcess(cmd, port, log, child_env())


class Client:
    """One keep-alive connection posting a fixed JSON body to /invocations."""

    def __init__(self, port: int, body: bytes):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.body = body

    def __call__(self) -> dict:
        self.conn.request("POST", "/invocations", self.body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:500]!r}")
        return json.loads(data)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


def interleaved(contenders: dict, n: int, warmup: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(n):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return times


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def requests_per_second(port: int, body: bytes, clients: int, seconds: float) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * clients
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = Client(port, body)
        try:
            while time.perf_counter() < stop:
                client()
                counts[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported after join
            errors.append(exc)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - start)


def encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.squeeze() if image.shape[-1] == 1 else image).save(buf, fmt)
    return buf.getvalue()


def b64_body(data: bytes) -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (under 3 minutes)")
    args = parser.parse_args()
    n_digits, n_mobile, warmup, rps_seconds = (
        (60, 60, 5, 3.0) if args.quick else (1000, 300, 30, 15.0)
    )

    import mlflow
    import tensorflow as tf

    import kerasflow
    from kerasflow import models
    from kerasflow.config import DataConfig
    from kerasflow.pipelines.transforms import decode_image, preprocess
    from kerasflow.serving.export import export_saved_model
    from kerasflow.serving.portable import export_portable

    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="kerasflow-bench-"))
    cfg = kerasflow.load_config(None)
    digits = models.build(
        cfg.model.name, (*cfg.data.image_size, cfg.data.channels), 10, **cfg.model.params
    )
    contract = {"task": "classification", "class_names": [str(i) for i in range(10)]}
    digits_exported = export_saved_model(digits, tmp / "digits", cfg.data, contract)
    digits_export = digits_exported.path
    mlflow.keras.save_model(digits, str(tmp / "anchor"))
    calibration = np.random.default_rng(1).integers(0, 256, (64, 16, 16, 1), np.uint8)
    litert = export_portable(digits, tmp / "art", cfg.data, contract, "litert", "int8", calibration)
    onnx = export_portable(digits, tmp / "art", cfg.data, contract, "onnx")

    rng = np.random.default_rng(0)
    digit = (rng.random((8, 8, 1)) * 255).astype(np.uint8)
    digit_png = encode(digit, "PNG")
    digit_float = preprocess(decode_image(digit_png, 1), cfg.data).numpy()[None]
    anchor_body = json.dumps({"inputs": digit_float.tolist()}).encode()
    kf_body = b64_body(digit_png)

    # All three servers start together (their start-up overlaps); they take turns to serve.
    mobile_data = DataConfig(image_size=(224, 224), channels=3, normalize="imagenet")
    mobile = models.build("mobilenet_v2", (224, 224, 3), 10)
    mobile_exported = export_saved_model(mobile, tmp / "mobilenet", mobile_data, contract)
    mobile_export = mobile_exported.path
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    photo = np.stack([127 + 100 * np.sin(xx * 0.03), 127 + 100 * np.cos(yy * 0.02), xx % 255], -1)
    jpeg = encode(np.clip(photo, 0, 255).astype(np.uint8), "JPEG")
    m_port = free_port()
    ms = Server(
        [sys.executable, "-m", "kerasflow", "serve", str(mobile_export), "--port", str(m_port),
         "--saved-model-digest", mobile_exported.digest],
        m_port, tmp / "mobile.log",
    )  # fmt: skip
    phases = {"export": time.time() - started}
    anchor_port, kf_port = free_port(), free_port()
    anchor = Server(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(tmp / "anchor"),
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(anchor_port)],
        anchor_port, tmp / "anchor.log",
    )  # fmt: skip
    kf = Server(
        [sys.executable, "-m", "kerasflow", "serve", str(digits_export), "--port", str(kf_port),
         "--saved-model-digest", digits_exported.digest],
        kf_port, tmp / "kf.log",
    )  # fmt: skip
    lite_port, onnx_port = free_port(), free_port()
    lite = Server(
        [sys.executable, "-m", "kerasflow", "serve", str(litert.path), "--port", str(lite_port)],
        lite_port, tmp / "litert.log",
    )  # fmt: skip
    onnx_server = Server(
        [sys.executable, "-m", "kerasflow", "serve", str(onnx.path), "--port", str(onnx_port)],
        onnx_port, tmp / "onnx.log",
    )  # fmt: skip
    try:
        anchor.wait()
        kf.wait()
        lite.wait()
        onnx_server.wait()
        phases["servers_up"] = time.time() - started
        loaded = tf.saved_model.load(str(digits_export))
        sig = loaded.signatures["serving_default"]
        digit_tensor = tf.constant([digit_png])
        anchor_client, kf_client = Client(anchor_port, anchor_body), Client(kf_port, kf_body)
        # The same answer from both servers (the anchor gets the same preprocessing).
        a = np.array(anchor_client()["predictions"][0], dtype=np.float64)
        k = np.array(kf_client()["predictions"][0]["probabilities"], dtype=np.float64)
        max_diff = float(np.max(np.abs(a - k)))
        t = interleaved(
            {
                "anchor": anchor_client,
                "http": kf_client,
                "direct": lambda: sig(image_bytes=digit_tensor),
                "litert_int8_http": Client(lite_port, kf_body),
                "onnx_http": Client(onnx_port, kf_body),
            },
            n_digits,
            warmup,
        )
        rps1 = requests_per_second(kf_port, kf_body, 1, rps_seconds)
        rps8 = requests_per_second(kf_port, kf_body, 8, rps_seconds)
        phases["digits_done"] = time.time() - started
    except BaseException:
        ms.stop()
        raise
    finally:
        anchor.stop()
        kf.stop()
        lite.stop()
        onnx_server.stop()

    mt: dict | None = None
    mobile_error = None
    try:
        ms.wait()
        m_loaded = tf.saved_model.load(str(mobile_export))
        m_sig = m_loaded.signatures["serving_default"]
        jpeg_tensor = tf.constant([jpeg])
        mt = interleaved(
            {
                "http": Client(m_port, b64_body(jpeg)),
                "direct": lambda: m_sig(image_bytes=jpeg_tensor),
            },
            n_mobile,
            warmup,
        )
    except Exception as exc:  # noqa: BLE001 - a loaded machine can drop it; digits still print
        mobile_error = f"{type(exc).__name__}: {exc}"
    finally:
        ms.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    result = {
        "benchmark": "serving_latency",
        "quick": args.quick,
        "http_over_mlflow_keras_p50_ratio": round(
            statistics.median(t["http"]) / statistics.median(t["anchor"]), 4
        ),
        "http_over_direct_p50_ratio": mt
        and round(statistics.median(mt["http"]) / statistics.median(mt["direct"]), 4),
        "litert_int8_http_over_direct_p50_ratio": round(
            statistics.median(t["litert_int8_http"]) / statistics.median(t["direct"]), 4
        ),
        "onnx_http_over_direct_p50_ratio": round(
            statistics.median(t["onnx_http"]) / statistics.median(t["direct"]), 4
        ),
        "p50_ms_litert_int8_http": round(pct(t["litert_int8_http"], 50), 3),
        "p50_ms_onnx_http": round(pct(t["onnx_http"], 50), 3),
        "p50_ms_mlflow_keras_anchor": round(pct(t["anchor"], 50), 3),
        "p99_ms_mlflow_keras_anchor": round(pct(t["anchor"], 99), 3),
        "p50_ms_http": round(pct(t["http"], 50), 3),
        "p99_ms_http": round(pct(t["http"], 99), 3),
        "p50_ms_direct": round(pct(t["direct"], 50), 3),
        "p99_ms_direct": round(pct(t["direct"], 99), 3),
        "mobilenet_v2_224_p50_ms_http": mt and round(pct(mt["http"], 50), 3),
        "mobilenet_v2_224_p99_ms_http": mt and round(pct(mt["http"], 99), 3),
        "mobilenet_v2_224_p50_ms_direct": mt and round(pct(mt["direct"], 50), 3),
        "mobilenet_v2_224_p99_ms_direct": mt and round(pct(mt["direct"], 99), 3),
        "rps_1_client": round(rps1, 1),
        "rps_8_clients": round(rps8, 1),
        "anchor_vs_kerasflow_max_abs_diff": max_diff,
        "requests_digits": n_digits,
        "requests_mobilenet": n_mobile,
        "mobilenet_error": mobile_error,
        "targets": {
            "http_over_mlflow_keras_p50_ratio": 0.25,
            "http_over_direct_p50_ratio": 1.3,
            "litert_int8_http_over_direct_p50_ratio": 1.0,
        },
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
