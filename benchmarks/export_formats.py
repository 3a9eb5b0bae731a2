"""Digits in every export format: file size, test accuracy and batch-1 latency, side by side.

Trains the packaged digits config (into a temporary MLflow store), exports it
as a SavedModel and as LiteRT (float32, float16, dynamic, int8) and ONNX
(float32, dynamic, int8) artefacts through ``export_formats`` (each conversion
in its own process), which verifies every artefact on the test split next to
Keras. Then times batch-1 calls of one test image, interleaved call by call
(so load on a shared machine hits every contender alike): the SavedModel's
``predict_images`` signature (uint8 pixels in, the artefacts' input), its
``predict_tensor`` signature (the model's float input, no preprocessing) and
each artefact in its own runtime. Prints one JSON object: per format the size,
accuracy, its drop from Keras, top-1 agreement, max probability difference,
p50 latency and the latency ratio to the SavedModel call.

Acceptance (issue 19): int8 LiteRT accuracy within 0.005 of Keras, float32
LiteRT and ONNX max probability difference <= 1e-5, int8 file <= 1/3 of the
float32 one, int8 LiteRT p50 <= 0.5 x the SavedModel signature's.

Usage: ``python benchmarks/export_formats.py [--quick] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


FORMATS = [
    "saved_model",
    "litert",
    "litert:float16",
    "litert:dynamic",
    "litert:int8",
    "onnx",
    "onnx:dynamic",
    "onnx:int8",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed calls")
    parser.add_argument("--epochs", type=int, default=50, help="digits training epochs")
    args = parser.parse_args()
    calls = 200 if args.quick else 2000

    import tensorflow as tf

    import kerasflow
    from kerasflow import tasks
    from kerasflow.serving.artefact_runtime import load_artefact
    from kerasflow.serving.formats import export_formats
    from kerasflow.serving.verify import split_pixels

    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="kerasflow-export-bench-"))
    try:
        cfg = kerasflow.load_config(
            None,
            [
                f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
                f"experiment.work_dir={tmp / 'runs'}",
                f"train.epochs={args.epochs}",
                "train.verbose=0",
            ],
        )
        result = kerasflow.train(cfg)
        trained = time.time() - started
        task = tasks.get(cfg.experiment.task)
        data = task.training_data(task.prepare(cfg.data, cfg.experiment.seed), result.model)
        contract = {"task": "classification", "class_names": [str(i) for i in range(10)]}
        report = export_formats(
            result.model,
            tmp / "export",
            cfg,
            contract,
            FORMATS,
            portable_dir=tmp / "art",
            data=data,
        )
        exported = time.time() - started
        pixels, _ = split_pixels(data, "test")
        signatures = tf.saved_model.load(str(report.saved_model.path)).signatures
        images_sig, tensor_sig = signatures["predict_images"], signatures["predict_tensor"]
        contenders = {
            "saved_model": lambda x: images_sig(images=tf.constant(x)),
            "saved_model_tensor": lambda x: tensor_sig(inputs=tf.constant(x, tf.float32)),
        }
        for art in report.artefacts:
            loaded = load_artefact(art.path)
            contenders[art.path.name] = loaded.run
        for fn in contenders.values():
            for i in range(20):
                fn(pixels[i : i + 1])
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for i in range(calls):
            one = pixels[i % len(pixels)][None]
            for name, fn in contenders.items():
                t = time.perf_counter()
                fn(one)
                times[name].append((time.perf_counter() - t) * 1e3)
        base = statistics.median(times["saved_model"])
        base_tensor = statistics.median(times["saved_model_tensor"])
        rows = {r["file"] or "keras": r for r in report.verification}
        formats = {
            "saved_model": {
                "p50_ms": round(base, 4),
                "size_bytes": sum(
                    f.stat().st_size for f in report.saved_model.path.rglob("*") if f.is_file()
                ),
            }
        }
        for art in report.artefacts:
            row = rows[art.path.name]
            p50 = statistics.median(times[art.path.name])
            formats[art.path.name] = {
                "p50_over_saved_model_tensor": round(p50 / base_tensor, 4),
                "format": row["format"],
                "quantize": row["quantize"],
                "size_bytes": row["size_bytes"],
                "accuracy": round(row["value"], 4),
                "accuracy_drop": round(row["metric_drop"], 4),
                "top1_agreement": round(row["top1_agreement"], 4),
                "max_prob_diff": float(f"{row['max_prob_diff']:.3g}"),
                "p50_ms": round(p50, 4),
                "p50_over_saved_model": round(p50 / base, 4),
            }
        f32, i8 = formats["model.tflite"], formats["model_int8.tflite"]
        out = {
            "benchmark": "export_formats",
            "quick": args.quick,
            "keras_test_accuracy": round(rows["keras"]["value"], 4),
            "test_examples": rows["keras"]["examples"],
            "formats": formats,
            "acceptance": {
                "int8_litert_accuracy_drop": i8["accuracy_drop"],
                "float32_litert_max_prob_diff": f32["max_prob_diff"],
                "float32_onnx_max_prob_diff": formats["model.onnx"]["max_prob_diff"],
                "int8_over_float32_size": round(i8["size_bytes"] / f32["size_bytes"], 4),
                "int8_litert_p50_over_saved_model": i8["p50_over_saved_model"],
                "int8_litert_p50_over_saved_model_tensor": i8["p50_over_saved_model_tensor"],
            },
            "saved_model_tensor_p50_ms": round(base_tensor, 4),
            "targets": {
                "int8_litert_accuracy_drop": 0.005,
                "float32_max_prob_diff": 1e-5,
                "int8_over_float32_size": 1 / 3,
                "int8_litert_p50_over_saved_model": 0.5,
            },
            "calls_per_contender": calls,
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "phase_seconds": {"train": round(trained, 1), "export_and_verify": round(exported, 1)},
            "seconds": round(time.time() - started, 1),
        }
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
