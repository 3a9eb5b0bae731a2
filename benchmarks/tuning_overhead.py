"""Tuning overhead: a search's wall time against standalone fits, and MLflow's per-epoch cost.

``search_overhead_ratio``: wall time of ``kerasflow.tune`` (all trials, the
report, the test evaluation and the registration) divided by the sum of
standalone ``kerasflow.train`` runs (in-process, tracked and registered as
``kerasflow train`` does) of the same trial configurations. Target <= 1.10.

``tracking_overhead_ratio``: median time of an epoch with the MLflow callback
logging into a SQLite store, divided by the same without it (same model and
data, runs interleaved). Target <= 1.02. On a busy machine the epochs' spread
swamps a few milliseconds of logging, so ``tracking_overhead_ratio_from_callback``
also reports ``1 + (time inside the MLflow callback per epoch) / (epoch time off)``.

Prints one JSON object. ``--quick`` (8x8 digits, tiny model) runs in under
three minutes on a quiet machine.

    python benchmarks/tuning_overhead.py --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _base(root: Path, quick: bool) -> dict:
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    size = [8, 8] if quick else [16, 16]
    width = 8 if quick else 32
    return {
        "experiment": {"name": "bench", "seed": 3, "work_dir": str(root / "runs")},
        "data": {
            "source": "digits",
            "image_size": size,
            "batch_size": 32,
            "split": {"train": 0.7, "validation": 0.1, "test": 0.2, "stratify": True},
            "augment": {"rotation": 0.03, "translation": 0.1},
        },
        "model": {
            "name": "simple_cnn",
            "params": {"width": width, "depth": 2, "dense_units": 64, "bn_momentum": 0.9},
        },
        "compile": {"optimizer": {"name": "adam", "learning_rate": 0.002}},
        "train": {
            "epochs": 3 if quick else 8,
            "verbose": 0,
            "checkpoint": {"monitor": "val_loss"},
            "early_stopping": {"enabled": False},
        },
        "tracking": {"uri": uri, "registered_model": "bench-model"},
        "tune": {
            "tuner": "random",
            "max_trials": 3 if quick else 4,
            "directory": str(root / "tuning"),
            "objective": {"name": "val_loss", "direction": "min"},
            "space": {
                "model.params.width": {"choice": [width // 2, width]},
                "compile.optimizer.learning_rate": {"float": [1e-3, 5e-3], "sampling": "log"},
            },
        },
    }


def _search_ratio(root: Path, quick: bool) -> dict:
    import kerasflow
    from kerasflow.config import build_config
    from kerasflow.tuning.search_space import apply_values, parse_space

    data = _base(root, quick)
    cfg = build_config(data)
    # Warm-up: TensorFlow's one-time start-up costs are paid by neither side.
    warm = build_config(
        {**data, "train": {**data["train"], "epochs": 1}, "tracking": {"enabled": False}}
    )
    kerasflow.train(warm)

    start = time.perf_counter()
    result = kerasflow.tune(cfg)
    search_s = time.perf_counter() - start

    specs = parse_space(data["tune"]["space"])
    standalone = []
    for i, row in enumerate(result.trials):
        trial = apply_values(data, specs, row)
        trial["experiment"] = {**trial["experiment"], "name": f"bench_standalone_{i}"}
        start = time.perf_counter()
        kerasflow.train(build_config(trial))
        standalone.append(time.perf_counter() - start)
    return {
        "search_seconds": round(search_s, 2),
        "standalone_seconds": [round(s, 2) for s in standalone],
        "trials": result.num_trials,
        "search_overhead_ratio": round(search_s / sum(standalone), 4),
    }


def _tracking_ratio(root: Path, quick: bool, rounds: int) -> dict:
    import keras

    from kerasflow import pipelines
    from kerasflow.config import build_config
    from kerasflow.tracking import MlflowCallback, start_tracker
    from kerasflow.training.compile import build_compiled_model

    data = _base(root, quick)
    data.pop("tune")
    cfg = build_config(data)
    prepared = pipelines.prepare(cfg.data, cfg.experiment.seed)
    train_ds = prepared.dataset("train")
    val_ds = prepared.dataset("validation")
    epochs = 5 if quick else 6

    class Start(keras.callbacks.Callback):
        def __init__(self, clock):
            super().__init__()
            self.clock = clock

        def on_epoch_begin(self, epoch, logs=None):
            self.clock["t"] = time.perf_counter()

    class Stop(keras.callbacks.Callback):
        """Placed last, so the MLflow logging between Start and Stop is inside the epoch."""

        def __init__(self, clock, times):
            super().__init__()
            self.clock, self.times = clock, times

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.clock["t"])

    class TimedMlflowCallback(MlflowCallback):
        """MLflow's own per-epoch cost, timed alone (robust to a busy machine)."""

        def __init__(self, tracker, spent):
            super().__init__(tracker)
            self.spent = spent

        def on_epoch_end(self, epoch, logs=None):
            start = time.perf_counter()
            super().on_epoch_end(epoch, logs)
            self.spent.append(time.perf_counter() - start)

    per_epoch: dict[str, list[float]] = {"on": [], "off": []}
    logging_s: list[float] = []
    for r in range(rounds):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            keras.utils.set_random_seed(cfg.experiment.seed)
            model = build_compiled_model(cfg, prepared)
            clock: dict[str, float] = {}
            times: list[float] = []
            tracker = None
            middle = []
            if mode == "on":
                tracker = start_tracker("bench_tracking", cfg.tracking.uri, run_name=f"r{r}")
                middle = [TimedMlflowCallback(tracker, logging_s)]
            callbacks = [Start(clock), *middle, Stop(clock, times)]
            model.fit(
                train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=0
            )
            if tracker is not None:
                tracker.end()
            per_epoch[mode].extend(times[1:])  # the first epoch traces the graph
    on, off = statistics.median(per_epoch["on"]), statistics.median(per_epoch["off"])
    return {
        "epoch_seconds_tracking_on": round(on, 4),
        "epoch_seconds_tracking_off": round(off, 4),
        "epochs_measured": len(per_epoch["on"]),
        "tracking_overhead_ratio": round(on / off, 4),
        "mlflow_seconds_per_epoch": round(statistics.median(logging_s), 4),
        # The same ratio from the callback's own time: less sensitive to other processes.
        "tracking_overhead_ratio_from_callback": round(1 + statistics.median(logging_s) / off, 4),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 digits, tiny model, 3 trials")
    parser.add_argument("--rounds", type=int, default=None, help="tracking on/off repetitions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rounds = args.rounds or (2 if args.quick else 4)
    with tempfile.TemporaryDirectory(prefix="kerasflow-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        out = {"benchmark": "tuning_overhead", "quick": args.quick}
        out.update(_search_ratio(root, args.quick))
        out.update(_tracking_ratio(root, args.quick, rounds))
        out["wall_seconds"] = round(time.perf_counter() - start, 1)
        out["standalone"] = "kerasflow.train() in-process per trial configuration, tracked"
        out["targets"] = {"search_overhead_ratio": 1.10, "tracking_overhead_ratio": 1.02}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
