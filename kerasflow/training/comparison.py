"""Comparing runs: a table and a bar plot of chosen metrics across MLflow runs.

Answers the question users open the MLflow UI for ("which run is best, by how
much?") in one command: ``kerasflow compare RUN_ID RUN_ID ...`` or
``kerasflow compare EXPERIMENT``.

Example:
    >>> from kerasflow.training.comparison import compare_runs
    >>> result = compare_runs(["digits"], metrics=["test_accuracy", "test_macro_f1"], out_dir="cmp")
    >>> print(result.to_text())
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from kerasflow.errors import TrackingError
from kerasflow.tasks.base import metric_mode

DEFAULT_METRICS = (
    "test_accuracy",
    "test_macro_f1",
    "test_macro_roc_auc",
    "test_expected_calibration_error",
    "test_mean_iou",
    "test_pixel_accuracy",
    "test_loss",
)
PARAMS = ("model.name",)


@dataclass
class Comparison:
    """Runs in rows, metrics in columns (None where a run lacks the metric)."""

    runs: list  # list[kerasflow.tracking.run_records.RunRecord]
    metrics: list[str]
    values: list[list[float | None]]
    files: dict[str, Path] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One dict per run: id, name, experiment, model, then each metric."""
        return [
            {
                "run_id": run.run_id,
                "run_name": run.run_name,
                "experiment": run.experiment,
                **{p: run.params.get(p, "") for p in PARAMS},
                **dict(zip(self.metrics, vals, strict=True)),
            }
            for run, vals in zip(self.runs, self.values, strict=True)
        ]

    def best(self, metric: str) -> str | None:
        """Run id with the best value of ``metric`` (lowest where :func:`metric_mode` says min)."""
        col = self.metrics.index(metric)
        scored = [(v[col], r.run_id) for r, v in zip(self.runs, self.values, strict=True)]
        scored = [s for s in scored if s[0] is not None]
        if not scored:
            return None
        return (min if metric_mode(metric) == "min" else max)(scored)[1]

    def to_text(self) -> str:
        """A fixed-width table, runs in rows, with the best value of each metric starred."""
        headers = ["run", "model", *self.metrics]
        best = {m: self.best(m) for m in self.metrics}
        lines = []
        for run, vals in zip(self.runs, self.values, strict=True):
            cells = [run.label, run.params.get("model.name", "")]
            for m, v in zip(self.metrics, vals, strict=True):
                mark = "*" if v is not None and best[m] == run.run_id and len(self.runs) > 1 else ""
                cells.append("-" if v is None else f"{v:.4f}{mark}")
            lines.append(cells)
        widths = [max(len(str(c)) for c in col) for col in zip(headers, *lines, strict=True)]

        def fmt(cells):
            return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, lines)])

    def to_markdown(self) -> str:
        headers = ["run", "model", *self.metrics]
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for run, vals in zip(self.runs, self.values, strict=True):
            cells = [run.label, run.params.get("model.name", "")]
            cells += ["-" if v is None else f"{v:.4f}" for v in vals]
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)


def choose_metrics(runs, metrics=None) -> list[str]:
    """The metrics to compare: those asked for, else the defaults that any run has.

    Without defaults present, every ``test_`` metric any run logged; then every metric.
    """
    if metrics:
        return list(metrics)
    present = {k for run in runs for k in run.metrics}
    chosen = [m for m in DEFAULT_METRICS if m in present]
    if not chosen:
        chosen = sorted(k for k in present if k.startswith("test_")) or sorted(present)
    return chosen


def compare_runs(refs, metrics=None, uri: str | None = None, out_dir=None) -> Comparison:
    """Compare MLflow runs (by id, or all runs of an experiment by name).

    Args:
        refs: run ids and/or experiment names.
        metrics: metric names to compare (default: see :func:`choose_metrics`).
        uri: tracking store.
        out_dir: when given, writes ``comparison.csv``, ``comparison.json``,
            ``comparison.md`` and ``comparison.png`` there.

    Raises:
        TrackingError: unknown run or experiment, no runs, or a metric no run has.
    """
    from kerasflow.tasks import plots
    from kerasflow.tracking.run_records import fetch_runs

    if not refs:
        raise TrackingError("Name at least one run id or experiment to compare.")
    runs = fetch_runs(list(refs), uri)
    if not runs:
        raise TrackingError(f"No runs found for {', '.join(refs)}.")
    chosen = choose_metrics(runs, metrics)
    missing = [m for m in chosen if not any(m in r.metrics for r in runs)]
    if missing:
        known = sorted({k for r in runs for k in r.metrics})
        raise TrackingError(
            f"No compared run has metric(s) {', '.join(missing)}. "
            f"Logged metrics: {', '.join(known) or '(none)'}."
        )
    values = [[run.metrics.get(m) for m in chosen] for run in runs]
    result = Comparison(runs=runs, metrics=chosen, values=values)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows = result.rows()
        with open(out / "comparison.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (out / "comparison.json").write_text(json.dumps(rows, indent=2))
        (out / "comparison.md").write_text(result.to_markdown() + "\n")
        by_metric = {m: [v[i] for v in values] for i, m in enumerate(chosen)}
        plots.comparison_png([r.label for r in runs], by_metric, out / "comparison.png")
        result.files = {name: out / f"comparison.{name}" for name in ("csv", "json", "md", "png")}
    return result
