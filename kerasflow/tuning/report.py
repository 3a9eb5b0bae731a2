"""A search's report: the ``trials.csv`` table and its plots (objective per trial and per parameter)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

FIXED_COLUMNS = ("trial_id", "status", "objective", "run_id")


def write_trials_csv(rows: list[dict[str, Any]], path: Path, param_names: list[str]) -> Path:
    """One row per trial: id, status, objective, MLflow run, then each parameter (blank if inactive)."""
    columns = [*FIXED_COLUMNS, *param_names]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(
    rows: list[dict[str, Any]],
    out_dir: Path,
    param_names: list[str],
    objective: str,
    direction: str,
) -> list[Path]:
    """``objective_per_trial.png`` and ``objective_vs_<param>.png`` for each parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if _finite(r.get("objective"))]
    written: list[Path] = []

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [int(r["trial_id"]) if str(r["trial_id"]).isdigit() else i for i, r in enumerate(done)]
    ys = [r["objective"] for r in done]
    ax.plot(xs, ys, "o", label="trial")
    best, running = None, []
    for y in ys:
        best = y if best is None else (max(best, y) if direction == "max" else min(best, y))
        running.append(best)
    if ys:
        ax.step(xs, running, where="post", label=f"best so far ({direction})")
    failed = [r for r in rows if not _finite(r.get("objective"))]
    if failed:
        ax.set_title(f"{len(failed)} trial(s) without an objective (failed)", fontsize=9)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = out_dir / "objective_per_trial.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    for name in param_names:
        points = [(r[name], r["objective"]) for r in done if r.get(name) not in (None, "")]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        values = [p[0] for p in points]
        if all(_finite(v) and not isinstance(v, bool) for v in values):
            ax.plot(values, [p[1] for p in points], "o")
            if min(values) > 0 and max(values) / min(values) >= 100:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            ax.plot([labels.index(str(v)) for v in values], [p[1] for p in points], "o")
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
        fig.tight_layout()
        path = out_dir / f"objective_vs_{_safe(name)}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
