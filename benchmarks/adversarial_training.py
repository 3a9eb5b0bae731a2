"""Adversarial training on digits: does FGSM training raise PGD accuracy, and what does it cost?

Trains the packaged digits config twice per seed, once as it is and once with
``train.adversarial: {method: fgsm, epsilon: 4, ratio: 0.5}``, all runs on
the one split of ``experiment.seed`` 42 (only the training seed changes),
tracking off. Each model is scored on the test split: clean accuracy and
PGD accuracy at epsilon 4 and 8 (10 steps of 2.5 x epsilon / 10, seeded random start),
PGD with 50 steps at epsilon 4, and the gradient-masking check (PGD at epsilon 32).

Usage:
    python benchmarks/adversarial_training.py [--seeds 1 2 3] [--epsilon 4] [--out FILE]

Prints one JSON object (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kerasflow  # noqa: E402
from kerasflow import pipelines, tasks  # noqa: E402
from kerasflow.config import AdversarialEvalConfig  # noqa: E402
from kerasflow.training import adversarial  # noqa: E402

SPLIT_SEED = 42


def run(seed: int, adv_epsilon: float | None, work: str, prepared) -> dict:
    extra = [f"experiment.seed={seed}", "tracking.enabled=false", "train.verbose=0"]
    extra += [f"experiment.work_dir={work}", "train.explain_images=0", "train.resume=false"]
    if adv_epsilon is not None:
        extra += ["train.adversarial.method=fgsm", f"train.adversarial.epsilon={adv_epsilon}"]
    cfg = kerasflow.load_config(None, extra)
    start = time.perf_counter()
    result = kerasflow.train(cfg, prepared=prepared)
    seconds = time.perf_counter() - start
    task = tasks.get(cfg.experiment.task)
    data = task.training_data(prepared, result.model)
    section = AdversarialEvalConfig(epsilons=[4.0, 8.0], pgd_steps=10)
    contract = task.contract(result.model, data)
    attacks = adversarial.evaluate_attacks(result.model, data, "test", task, contract, section)
    strong = adversarial.evaluate_attacks(
        result.model, data, "test", task, contract,
        AdversarialEvalConfig(epsilons=[4.0], pgd_steps=50), seed=1,
    )  # fmt: skip
    return {
        "seed": seed,
        "adversarial_training": adv_epsilon,
        "clean_accuracy": result.report["accuracy"],
        "fgsm_eps4_accuracy": attacks["fgsm"][0],
        "pgd_eps4_accuracy": attacks["pgd"][0],
        "pgd_eps8_accuracy": attacks["pgd"][1],
        "pgd50_eps4_accuracy": strong["pgd"][0],
        "pgd_eps32_accuracy": attacks["pgd_large"],
        "gradient_masking_suspected": attacks["gradient_masking"]["suspected"],
        "train_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epsilon", type=float, default=4.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    base = kerasflow.load_config(None, [f"experiment.seed={SPLIT_SEED}"])
    prepared = pipelines.prepare(base.data, SPLIT_SEED)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:  # arms interleaved per seed
            rows.append(run(seed, None, work, prepared))
            rows.append(run(seed, args.epsilon, work, prepared))
    summary = {}
    for arm, key in (("standard", None), ("fgsm_training", args.epsilon)):
        arm_rows = [r for r in rows if r["adversarial_training"] == key]
        summary[arm] = {
            metric: statistics.mean(r[metric] for r in arm_rows)
            for metric in (
                "clean_accuracy",
                "fgsm_eps4_accuracy",
                "pgd_eps4_accuracy",
                "pgd50_eps4_accuracy",
                "pgd_eps8_accuracy",
                "pgd_eps32_accuracy",
            )
        }
    out = {
        "benchmark": "adversarial_training",
        "config": "packaged digits",
        "split_seed": SPLIT_SEED,
        "adversarial": {"method": "fgsm", "epsilon": args.epsilon, "ratio": 0.5},
        "runs": rows,
        "mean": summary,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
