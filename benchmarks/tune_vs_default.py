"""Does the packaged search pick a configuration at least as good as the default one?

Runs the search of ``kerasflow/configs/digits_tune.yaml`` (or ``--config``) in a
temporary MLflow store and tuning folder, then trains the configuration it
picked and the default configuration (the same file without its ``tune:``
section, as ``kerasflow train`` runs it) once per seed, and evaluates each on
the test split. Every run of both uses one data split (that of the config's
``experiment.seed``, as the search's executions do); the seeds change the
weights' initialisation, dropout, shuffling and augmentation draws. A single
run's test accuracy moves by a test error or two from seed to seed, so the
comparison is of the means over ``--seeds`` seeds (default 3: 42, 43, 44).

When the search picks the default configuration itself, its runs are those of
the default (same configuration, same seeds) and ``best_is_default`` is true.

Prints one JSON object: the search (wall time, best trial and its objective,
the default configuration's trial objective), per-seed and mean test accuracy
and loss of both configurations, and ``best_minus_default_mean_accuracy``.
``--all-trials`` also trains every other trial's configuration the same way
(``other_trials``), to see whether the search's objective ranked them as the
test split does.

    python benchmarks/tune_vs_default.py
    python benchmarks/tune_vs_default.py --all-trials   # every trial's configuration too
    python benchmarks/tune_vs_default.py --quick        # a smoke run (make bench), ~1 minute
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

PACKAGED = Path(__file__).resolve().parents[1] / "kerasflow" / "configs" / "digits_tune.yaml"


def _at(data: dict, path: str):
    for key in path.split("."):
        data = data[key]
    return data


def search_config(config: str, root: Path, overrides: list[str]):
    """The search config with every file it writes under ``root``."""
    from kerasflow.config import load_config

    return load_config(
        config,
        [
            f"tracking.uri=sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            f"tune.directory={root / 'tuning'}",
            f"experiment.work_dir={root / 'runs'}",
            "train.verbose=0",
            *overrides,
        ],
    )


def seed_runs(cfg, seeds: list[int], root: Path, label: str) -> dict:
    """Train ``cfg`` (its ``tune:`` section dropped) once per seed on one split; test metrics."""
    import kerasflow
    from kerasflow import pipelines
    from kerasflow.config import build_config

    data = cfg.to_dict()
    data.pop("tune", None)
    data.pop("export", None)
    data["experiment"]["work_dir"] = str(root / "runs" / label)
    data["train"]["explain_images"] = 0
    data["tracking"].update(
        uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        experiment=f"tune_vs_default_{label}",
        log_model=False,
        register_model=False,
    )
    base = build_config(data, origin=f"({label})")
    prepared = pipelines.prepare(base.data, base.experiment.seed)
    runs, exact = [], []
    for seed in seeds:
        data["experiment"]["seed"] = seed
        start = time.perf_counter()
        result = kerasflow.train(build_config(data, origin=f"({label})"), prepared=prepared)
        m = result.test_metrics
        exact.append((m["test_accuracy"], m["test_loss"]))
        runs.append(
            {
                "seed": seed,
                "test_accuracy": round(m["test_accuracy"], 5),
                "test_errors": round((1 - m["test_accuracy"]) * prepared.size("test")),
                "test_loss": round(m["test_loss"], 5),
                "best_val_loss": round(min(result.history["val_loss"].values()), 5),
                "best_val_accuracy": round(max(result.history["val_accuracy"].values()), 5),
                "epochs_run": len(result.history["loss"]),
                "wall_s": round(time.perf_counter() - start, 1),
            }
        )
    accs = [a for a, _ in exact]
    losses = [v for _, v in exact]
    return {
        "per_seed": runs,
        "test_errors": sum(r["test_errors"] for r in runs),
        "mean_test_accuracy": round(statistics.fmean(accs), 5),
        "stdev_test_accuracy": round(statistics.stdev(accs), 5) if len(accs) > 1 else 0.0,
        "mean_test_loss": round(statistics.fmean(losses), 5),
        "test_size": prepared.size("test"),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(PACKAGED))
    parser.add_argument("--seeds", type=int, default=None, help="runs per configuration (3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (3 epochs, one execution per trial, 2 seeds): checks the script, "
        "says nothing about the configurations",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--all-trials",
        action="store_true",
        help="also train every other trial's configuration with the seeds (is the pick the best?)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.set = ["train.epochs=3", "tune.executions_per_trial=1", *args.set]
    args.seeds = args.seeds or (2 if args.quick else 3)
    logging.basicConfig(level=logging.WARNING)

    import kerasflow
    from kerasflow.config import build_config
    from kerasflow.tuning.search_space import apply_values, parse_space

    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tune_vs_default_") as tmp:
        root = Path(tmp)
        cfg = search_config(args.config, root, args.set)
        seeds = [cfg.experiment.seed + i for i in range(args.seeds)]
        start = time.perf_counter()
        result = kerasflow.tune(cfg)
        search_wall = time.perf_counter() - start

        specs = parse_space(cfg.tune.space)
        paths = [s.path for s in specs]
        default_values = {p: _at(cfg.to_dict(), p) for p in paths}
        default_trial = next(
            (t for t in result.trials if all(t.get(p) == v for p, v in default_values.items())),
            None,
        )
        best_is_default = result.best_hyperparameters == default_values
        default = seed_runs(cfg, seeds, root, "default")
        best = default if best_is_default else seed_runs(result.config, seeds, root, "best")
        others = []
        if args.all_trials:
            for row in result.trials:
                values = {p: row[p] for p in paths if p in row}
                if row["status"] != "COMPLETED" or values in (
                    default_values,
                    result.best_hyperparameters,
                ):
                    continue
                trial_cfg = build_config(apply_values(cfg.to_dict(), specs, values))
                runs = seed_runs(trial_cfg, seeds, root, f"trial_{row['trial_id']}")
                others.append(
                    {
                        "trial_id": row["trial_id"],
                        "objective": row["objective"],
                        **values,
                        "test_errors": runs["test_errors"],
                        "mean_test_accuracy": runs["mean_test_accuracy"],
                        "mean_test_loss": runs["mean_test_loss"],
                    }
                )
    out = {
        "config": args.config,
        "quick": args.quick,
        "overrides": args.set,
        "seeds": seeds,
        "search": {
            "wall_s": round(search_wall, 1),
            "tuner": cfg.tune.tuner,
            "trials": result.num_trials,
            "executions_per_trial": cfg.tune.executions_per_trial,
            "objective": f"{result.objective} ({result.direction}, mean over executions)",
            "best_trial_id": result.best_trial_id,
            "best_objective": result.best_objective,
            "default_trial_objective": default_trial["objective"] if default_trial else None,
            "best_trial_test_accuracy": result.test_metrics.get("test_accuracy"),
            "trials_table": result.trials,
        },
        "best_hyperparameters": result.best_hyperparameters,
        "default_hyperparameters": default_values,
        "best_is_default": best_is_default,
        "best": best,
        "default": default,
        "best_minus_default_mean_accuracy": round(
            best["mean_test_accuracy"] - default["mean_test_accuracy"], 5
        ),
        "best_minus_default_mean_test_loss": round(
            best["mean_test_loss"] - default["mean_test_loss"], 5
        ),
        "one_test_error": round(1 / default["test_size"], 5),
        **({"other_trials": others} if args.all_trials else {}),
        "total_wall_s": round(time.perf_counter() - total, 1),
    }
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), default=str))
