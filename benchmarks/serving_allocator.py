"""What serving with the system allocator costs: latency, and the memory a large image leaves.

``kerasflow serve`` sets ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=true`` (see
``kerasflow.serving.allocator``): oneDNN's kernels allocate with ``malloc``
instead of a pool that only grows. Side by side in one run, two ``kerasflow
serve`` processes of the same export take turns request by request:

* **pool**: ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=false`` (TensorFlow's default);
* **system**: kerasflow's default.

Cases: the digits model with one PNG (batch 1); MobileNetV2 at 224x224 with
one JPEG and with a batch of 16; then one whole 6000 x 6000 JPEG (36 MP, in the
40 MP budget) sent three times to each digits server, with each server's
resident memory after every request. Reported: p50 latency of system over pool
per case (1.0 = same cost), and the memory each server kept.

Prints one JSON object. ``--quick`` runs in about 3 minutes.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving_latency import Client, b64_body, child_env, encode, interleaved  # noqa: E402
from tests.net import ServerProcess, free_port  # noqa: E402

ENV = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def start(export, digest: str, allocator: str, log: Path) -> ServerProcess:
    port = free_port()
    env = child_env()
    env[ENV] = allocator
    cmd = [sys.executable, "-m", "kerasflow", "serve", str(export), "--port", str(port),
           "--saved-model-digest", digest, "--max-payload-mb", "4"]  # fmt: skip
    return ServerProcess(cmd, port, log, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    n, warmup = (60, 5) if args.quick else (400, 20)

    import numpy as np
    from PIL import Image

    import kerasflow
    from kerasflow import models
    from kerasflow.config import DataConfig
    from kerasflow.serving.export import export_saved_model

    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="kerasflow-alloc-"))
    contract = {"task": "classification", "class_names": [str(i) for i in range(10)]}
    cfg = kerasflow.load_config(None)
    digits = models.build(
        cfg.model.name, (*cfg.data.image_size, cfg.data.channels), 10, **cfg.model.params
    )
    d_exp = export_saved_model(digits, tmp / "digits", cfg.data, contract)
    mobile_data = DataConfig(image_size=(224, 224), channels=3, normalize="imagenet")
    mobile = models.build("mobilenet_v2", (224, 224, 3), 10)
    m_exp = export_saved_model(mobile, tmp / "mobile", mobile_data, contract)

    digit_png = encode((np.random.default_rng(0).random((8, 8, 1)) * 255).astype(np.uint8), "PNG")
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    photo = np.stack([127 + 100 * np.sin(xx * 0.03), 127 + 100 * np.cos(yy * 0.02), xx % 255], -1)
    jpeg = encode(np.clip(photo, 0, 255).astype(np.uint8), "JPEG")
    big = io.BytesIO()
    Image.new("L", (6000, 6000), 90).save(big, "JPEG", quality=75)
    big_body = b64_body(big.getvalue())

    servers = {
        (model, alloc): start(exp.path, exp.digest, alloc, tmp / f"{model}-{alloc}.log")
        for model, exp in (("digits", d_exp), ("mobile", m_exp))
        for alloc in ("false", "true")
    }
    result: dict = {"benchmark": "serving_allocator", "quick": args.quick}
    try:
        for srv in servers.values():
            srv.wait()
        batch16 = json.dumps(
            {"instances": [{"b64": base64.b64encode(jpeg).decode()}] * 16}
        ).encode()
        cases = {
            "digits_png_batch1": ("digits", b64_body(digit_png)),
            "mobilenet_jpeg_batch1": ("mobile", b64_body(jpeg)),
            "mobilenet_jpeg_batch16": ("mobile", batch16),
        }
        ratios, p50 = {}, {}
        for case, (model, body) in cases.items():
            t = interleaved(
                {a: Client(servers[(model, a)].port, body) for a in ("false", "true")},
                n if case != "mobilenet_jpeg_batch16" else max(10, n // 4),
                warmup,
            )
            p50[case] = {a: round(statistics.median(v), 3) for a, v in t.items()}
            ratios[case] = round(p50[case]["true"] / p50[case]["false"], 4)
        result["system_over_pool_p50_ratio"] = ratios
        result["p50_ms"] = {c: {"pool": v["false"], "system": v["true"]} for c, v in p50.items()}
        kept, big_ms = {}, {}
        for alloc in ("false", "true"):
            srv = servers[("digits", alloc)]
            client = Client(srv.port, big_body)
            before = rss_mb(srv.proc.pid)
            after, times = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                client()
                times.append(round((time.perf_counter() - t0) * 1000, 1))
                after.append(round(rss_mb(srv.proc.pid) - before, 1))
            name = "pool" if alloc == "false" else "system"
            kept[name], big_ms[name] = after, times
        result["large_jpeg_rss_kept_mb"] = kept
        result["large_jpeg_ms"] = big_ms
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result["cpu_count"] = os.cpu_count()
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
