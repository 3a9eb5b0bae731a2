"""Acceptance figures of issue 18: transfer from a registered model, class imbalance, precision.

Three measurements on scikit-learn's digits (written as PNG class folders, as
a user would have them), each a full ``kerasflow.train`` of the packaged
digits config (``simple_cnn``) with a private MLflow store:

* ``transfer``: train on digits 0-4 and register; then train on digits 5-9 with
  10 training images per class, (a) ``model.pretrained: models:/NAME/1`` with
  ``train.finetune`` and (b) the same config from random weights. Mean test
  accuracy over the seeds, both arms.
* ``imbalance``: all ten digits with classes 0-4 cut to 10% of their training
  images (validation and test untouched); mean test macro recall over the
  seeds for neither, ``train.class_weight: balanced`` and ``data.sampling:
  balanced``.
* ``precision``: the packaged digits config trained with ``train.precision:
  float32``, ``mixed_bfloat16`` and ``train.jit_compile: true``; test accuracy.

Usage:
    python benchmarks/transfer_practices.py [--quick] [--only transfer,imbalance,precision]
        [--epochs N] [--out results.json]

Prints one JSON object (and writes it to --out).
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import kerasflow  # noqa: E402

SIZE = 16


def write_split_folder(root: Path, per_split: dict[str, dict[int, slice]]) -> Path:
    """``root/<split>/<digit>/<i>.png`` from scikit-learn's digits, slices per split and digit."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split, slices in per_split.items():
        for digit, part in slices.items():
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            images = digits.images[digits.target == digit][part]
            for i, image in enumerate(images):
                pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "L").resize((SIZE, SIZE), Image.BILINEAR).save(
                    folder / f"{i:04d}.png"
                )
    return root


def common(store: Path, name: str, seed: int, epochs: int) -> list[str]:
    return [
        f"experiment.name={name}",
        f"experiment.seed={seed}",
        f"experiment.work_dir={store / 'runs'}",
        f"tracking.uri=sqlite:///{store / 'mlflow.db'}",
        f"tracking.registered_model={name}",
        "train.verbose=0",
        "train.explain_images=0",
        f"train.epochs={epochs}",
    ]


def run(overrides: list[str]) -> dict:
    start = time.perf_counter()
    result = kerasflow.train(None, overrides=overrides)
    return {**result.test_metrics, "seconds": round(time.perf_counter() - start, 1)}


def transfer(store: Path, seeds: list[int], epochs: int) -> dict:
    source = write_split_folder(
        store / "digits04",
        {
            "train": {d: slice(0, 140) for d in range(5)},
            "test": {d: slice(140, None) for d in range(5)},
        },
    )
    target = write_split_folder(
        store / "digits59",
        {
            "train": {d: slice(0, 10) for d in range(5, 10)},
            "validation": {d: slice(10, 20) for d in range(5, 10)},
            "test": {d: slice(20, None) for d in range(5, 10)},
        },
    )
    src = run(common(store, "digits04", 0, epochs) + [f"data.source={source}"])
    uri = "models:/digits04/1"
    arms = {"pretrained": [], "random": []}
    for seed in seeds:
        base = common(store, f"digits59-{seed}", seed, epochs) + [
            f"data.source={target}",
            "tracking.register_model=false",
        ]
        arms["pretrained"].append(
            run(
                base
                + [
                    f"model.pretrained={uri}",
                    f"train.finetune={{freeze_epochs: {5 if epochs >= 10 else 1}}}",
                ]
            )
        )
        arms["random"].append(run(base))
    out = {"source_test_accuracy": src["test_accuracy"], "seeds": seeds, "epochs": epochs}
    for arm, results in arms.items():
        accs = [r["test_accuracy"] for r in results]
        out[arm] = {"test_accuracy": accs, "mean": statistics.mean(accs)}
    out["difference_points"] = 100 * (out["pretrained"]["mean"] - out["random"]["mean"])
    return out


def imbalance(store: Path, seeds: list[int], epochs: int) -> dict:
    # ~178 images per digit: 120 for training (12 for digits 0-4), 18 validation, the rest test.
    train = {d: slice(0, 12 if d < 5 else 120) for d in range(10)}
    folder = write_split_folder(
        store / "imbalanced",
        {
            "train": train,
            "validation": {d: slice(120, 138) for d in range(10)},
            "test": {d: slice(138, None) for d in range(10)},
        },
    )
    arms = {
        "none": [],
        "class_weight_balanced": ["train.class_weight=balanced"],
        "sampling_balanced": ["data.sampling=balanced"],
    }
    out: dict = {"seeds": seeds, "epochs": epochs, "train_per_class": [12] * 5 + [120] * 5}
    for arm, extra in arms.items():
        recalls, minority = [], []
        for seed in seeds:
            base = common(store, f"imb-{arm}-{seed}", seed, epochs)
            res = run(base + [f"data.source={folder}", "tracking.register_model=false", *extra])
            recalls.append(res["test_macro_recall"])
            minority.append(res["test_accuracy"])
        out[arm] = {
            "test_macro_recall": recalls,
            "mean_macro_recall": statistics.mean(recalls),
            "test_accuracy": minority,
        }
    return out


PRECISION_ARMS = {
    "float32": [],
    "mixed_bfloat16": ["train.precision=mixed_bfloat16"],
    "jit_compile": ["train.jit_compile=true"],
}


def precision(store: Path, seeds: list[int], epochs: int, arms=PRECISION_ARMS) -> dict:
    out: dict = {"seeds": seeds, "epochs": epochs}
    for arm, extra in arms.items():
        results = [
            run(
                common(store, f"prec-{arm}-{seed}", seed, epochs)
                + ["tracking.register_model=false", *extra]
            )
            for seed in seeds
        ]
        accs = [r["test_accuracy"] for r in results]
        out[arm] = {
            "test_accuracy": accs,
            "mean": statistics.mean(accs),
            "seconds": [r["seconds"] for r in results],
        }
    for arm in set(arms) - {"float32"}:
        out[f"{arm}_minus_float32_points"] = 100 * (out[arm]["mean"] - out["float32"]["mean"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, few epochs")
    parser.add_argument("--only", default="transfer,imbalance,precision")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--epochs", type=int, help="default 30 (4 with --quick)")
    parser.add_argument(
        "--precision-seeds", type=int, default=1, help="seeds of the precision arms (default 1)"
    )
    parser.add_argument(
        "--precision-arms", default=",".join(PRECISION_ARMS), help="comma-separated subset"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = [0] if args.quick else [0, 1, 2]
    epochs = args.epochs or (4 if args.quick else 30)
    result: dict = {"quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="kf-transfer-") as tmp:
        store = Path(tmp)
        for name in args.only.split(","):
            start = time.perf_counter()
            if name == "precision":  # one seed by default: its arms differ by rounding
                arms = {a: PRECISION_ARMS[a] for a in args.precision_arms.split(",")}
                seeds_p = list(range(args.precision_seeds))
                result[name] = precision(store / name, seeds_p, epochs, arms)
            else:
                result[name] = globals()[name](store / name, seeds, epochs)
            result[name]["wall_s"] = round(time.perf_counter() - start, 1)
            if args.out:
                args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
