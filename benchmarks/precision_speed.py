"""Training-step time of float32, mixed_bfloat16 and XLA (jit_compile) side by side.

For kerasflow's ResNet-50 and MobileNetV2 at a small input size, builds each
variant the way ``kerasflow train`` does (``train.precision`` is the Keras
dtype policy the model is built under; ``train.jit_compile`` goes to
``compile``), warms each up, then times ``train_on_batch`` steps with the
variants interleaved over repeats and reports medians and ratios to float32.
With a GPU, ``mixed_float16`` (with Keras' loss scaling) is measured too.

Usage:
    python benchmarks/precision_speed.py [--quick]

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
from kerasflow.training.compile import precision_scope  # noqa: E402

NUM_CLASSES = 10
FAMILIES = {"resnet50": {}, "mobilenet_v2": {}}


def variants(gpu: bool) -> dict[str, tuple[str, bool]]:
    out = {
        "float32": ("float32", False),
        "mixed_bfloat16": ("mixed_bfloat16", False),
        "jit_compile": ("float32", True),
    }
    if gpu:
        out["mixed_float16"] = ("mixed_float16", False)
        out["mixed_bfloat16_jit"] = ("mixed_bfloat16", True)
    return out


def build(name: str, size: int, precision: str, jit: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    with precision_scope(precision):
        model = models.build(name, (size, size, 3), NUM_CLASSES, **FAMILIES[name])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit,
    )
    return model


def time_steps(model, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss))  # wait for the device
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="32x32, batch 8, 2 repeats of 3 steps")
    args = parser.parse_args()
    gpu = bool(tf.config.list_physical_devices("GPU"))
    size = 32 if args.quick else 128
    batch = 8 if args.quick else 32
    repeats, steps = (2, 3) if args.quick else (5, 10)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, (batch,))
    result: dict = {
        "device": "gpu" if gpu else "cpu",
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "input": [size, size, 3],
        "batch": batch,
        "repeats": repeats,
        "steps_per_repeat": steps,
        "models": {},
    }
    for name in FAMILIES:
        built = {}
        for variant, (precision, jit) in variants(gpu).items():
            model = build(name, size, precision, jit)
            time_steps(model, x, y, 2)  # trace / compile
            built[variant] = model
        times: dict[str, list[float]] = {v: [] for v in built}
        for _ in range(repeats):
            for variant, model in built.items():  # interleaved: load drifts hit all alike
                times[variant].append(time_steps(model, x, y, steps))
        medians = {v: statistics.median(t) for v, t in times.items()}
        result["models"][name] = {
            "median_step_s": medians,
            "ratio_to_float32": {v: medians[v] / medians["float32"] for v in medians},
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
