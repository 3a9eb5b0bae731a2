"""Training-step overhead of kerasflow-built models versus keras.applications.

Times plain ``model.fit`` steps of kerasflow ResNet50 and MobileNetV2 against
the same ``keras.applications`` architectures (``weights=None``) with the same
batch, optimizer and loss, interleaving the models over repeats and taking
medians. The kerasflow ResNet50 is built with ``stride_in_1x1=True`` so that
both sides are the same architecture (kerasflow's default "v1.5" ResNet50
strides on the 3x3 convolution and does ~6% more MACs).

Also reports ResNet50's achieved training FLOP/s (3 x 2 x MACs x images/s) as
a fraction of the FLOP/s of a 4096x4096 fp32 matmul timed in the same run.

Usage:
    python benchmarks/model_overhead.py [--quick]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasflow import models  # noqa: E402
from kerasflow.models.flops import count_macs  # noqa: E402

NUM_CLASSES = 1000


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def _dataset(image_size: int, batch: int):
    rng = np.random.default_rng(0)
    x = rng.random((batch, image_size, image_size, 3), dtype="float32")
    y = rng.integers(0, NUM_CLASSES, (batch,))
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def _fit_step_time(model, data, steps: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per step of a plain ``model.fit``."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def compare(pairs, image_size, batch, steps, repeats):
    """Per-repeat (wall, CPU) step times of each model, pairs interleaved, order alternated."""
    data = _dataset(image_size, batch)
    times = {name: [] for pair in pairs.values() for name in pair}
    cpu_times = {name: [] for name in times}
    compiled = {}
    for pair in pairs.values():
        for name, factory in pair.items():
            compiled[name] = _compile(factory())
            _fit_step_time(compiled[name], data, 2)  # trace and warm up
    for r in range(repeats):
        for pair in pairs.values():
            order = list(pair) if r % 2 == 0 else list(pair)[::-1]
            for name in order:
                wall, cpu = _fit_step_time(compiled[name], data, steps)
                times[name].append(wall)
                cpu_times[name].append(cpu)
    return times, cpu_times, compiled


def matmul_flops(repeats: int, n: int = 4096) -> float:
    """FLOP/s of an ``n x n`` fp32 matmul (median of ``repeats``)."""
    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)

    @tf.function
    def run():
        return tf.reduce_sum(tf.linalg.matmul(a, b))

    run().numpy()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run().numpy()
        samples.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(samples)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small images and batch, < 3 min.")
    args = parser.parse_args(argv)
    if args.quick:
        image_size, batch, steps, repeats = 64, 8, 2, 7
    else:
        image_size, batch, steps, repeats = 224, 32, 10, 5
    shape = (image_size, image_size, 3)
    pairs = {
        "resnet50": {
            "kerasflow_resnet50": lambda: models.build(
                "resnet50", shape, NUM_CLASSES, stride_in_1x1=True
            ),
            "keras_resnet50": lambda: keras.applications.ResNet50(
                weights=None, input_shape=shape, classes=NUM_CLASSES
            ),
        },
        "mobilenet_v2": {
            "kerasflow_mobilenet_v2": lambda: models.build("mobilenet_v2", shape, NUM_CLASSES),
            "keras_mobilenet_v2": lambda: keras.applications.MobileNetV2(
                weights=None, input_shape=shape, classes=NUM_CLASSES
            ),
        },
    }
    started = time.perf_counter()
    times, cpu_times, compiled = compare(pairs, image_size, batch, steps, repeats)
    step = {name: statistics.median(t) for name, t in times.items()}
    fastest = {name: min(t) for name, t in times.items()}
    cpu = {name: statistics.median(t) for name, t in cpu_times.items()}
    for ours, theirs in (
        ("kerasflow_resnet50", "keras_resnet50"),
        ("kerasflow_mobilenet_v2", "keras_mobilenet_v2"),
    ):
        # Same architecture on both sides, or the ratio would not measure overhead.
        assert compiled[ours].count_params() == compiled[theirs].count_params()
        assert count_macs(compiled[ours]) == count_macs(compiled[theirs])
    macs = count_macs(compiled["kerasflow_resnet50"])
    images_per_s = batch / step["kerasflow_resnet50"]
    achieved = 3 * 2 * macs * images_per_s
    peak = matmul_flops(3 if args.quick else 10)
    result = {
        "step_time_ratio_resnet50": step["kerasflow_resnet50"] / step["keras_resnet50"],
        "step_time_ratio_mobilenet_v2": step["kerasflow_mobilenet_v2"] / step["keras_mobilenet_v2"],
        "flops_utilisation": achieved / peak,
        "target_step_time_ratio": 1.03,
        # Less sensitive to other processes sharing the CPU than wall-clock medians:
        # the fastest repeat, and the median CPU time the process itself used.
        "step_time_ratio_resnet50_min": fastest["kerasflow_resnet50"] / fastest["keras_resnet50"],
        "step_time_ratio_mobilenet_v2_min": fastest["kerasflow_mobilenet_v2"]
        / fastest["keras_mobilenet_v2"],
        "step_cpu_time_ratio_resnet50": cpu["kerasflow_resnet50"] / cpu["keras_resnet50"],
        "step_cpu_time_ratio_mobilenet_v2": cpu["kerasflow_mobilenet_v2"]
        / cpu["keras_mobilenet_v2"],
        "step_time_s": step,
        "step_cpu_time_s": cpu,
        "resnet50_macs_per_image": macs,
        "resnet50_images_per_s": images_per_s,
        "resnet50_training_gflops": achieved / 1e9,
        "matmul_4096_fp32_gflops": peak / 1e9,
        "image_size": image_size,
        "batch_size": batch,
        "steps_per_repeat": steps,
        "repeats": repeats,
        "quick": args.quick,
        "device": ", ".join(d.device_type for d in tf.config.list_physical_devices())
        + f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cpus)",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
