"""The evaluation report as one self-contained HTML page (figures embedded as base64 PNG).

The page opens from an MLflow artifact view or a mail attachment alike: no
external CSS, scripts or image files.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from pathlib import Path

# Figure files of one split, in the order the page shows them, with their headings.
FIGURES = (
    ("confusion_matrix_{split}.png", "Confusion matrix"),
    ("confusion_matrix_{split}_normalized.png", "Confusion matrix (normalised by true class)"),
    ("roc_curves_{split}.png", "ROC curves (one vs rest)"),
    ("pr_curves_{split}.png", "Precision-recall curves (one vs rest)"),
    ("reliability_{split}.png", "Calibration: reliability diagram"),
    ("confident_mistakes_{split}.png", "Most confidently wrong images"),
    ("segmentation_examples_{split}.png", "Image / true mask / predicted mask"),
    ("predictions_{split}.png", "Predicted boxes (true boxes in white)"),
    ("per_label_{split}.png", "Per label: F1 and average precision"),
    ("corruption_curves_{split}.png", "Corruption robustness: score per severity"),
    ("adversarial_{split}.png", "Adversarial robustness: score per epsilon (0..255 pixels)"),
    ("faithfulness_{split}.png", "Explanation faithfulness: deletion and insertion curves"),
    ("randomization_{split}.png", "Cascading model randomisation (sanity check)"),
)
EXPLANATIONS = "explanations_{split}_*.png"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left}
.meta{color:#555;font-size:.9em}figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
"""


def figures_in(folder, split: str) -> list[tuple[str, Path]]:
    """``(heading, path)`` of the report figures present in ``folder`` for ``split``."""
    folder = Path(folder)
    found = [
        (title, folder / pattern.format(split=split))
        for pattern, title in FIGURES
        if (folder / pattern.format(split=split)).is_file()
    ]
    for path in sorted(folder.glob(EXPLANATIONS.format(split=split))):
        method = path.stem.removeprefix(f"explanations_{split}_")
        found.append((f"Explanations ({method})", path))
    return found


def _embed(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def table(headers: list[str], rows: list[list]) -> str:
    head = "".join(
        f'<th class="name">{html.escape(h)}</th>' if i == 0 else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="name">{fmt(v)}</td>' if i == 0 else f"<td>{fmt(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def summary_table(report: dict, keys) -> str:
    """A ``metric | value`` table of the ``(key, label)`` pairs the report has."""
    return table(["metric", "value"], [[label, report[k]] for k, label in keys if k in report])


def render(
    report: dict,
    figures: list[tuple[str, Path]],
    section: str,
    run_id: str | None = None,
    title: str = "",
) -> str:
    """The HTML page of one evaluation report.

    Args:
        report: a task's report (with ``split`` and ``task``).
        figures: ``(heading, png_path)`` pairs, embedded in that order.
        section: the task's tables (:meth:`kerasflow.tasks.base.Task.html_section`).
        run_id: the MLflow run named at the top of the page.
        title: page title (default: "Evaluation report").
    """
    split = report.get("split", "test")
    task = report.get("task", "")
    title = title or "Evaluation report"
    run = run_id or report.get("run_id")
    meta = [
        f"MLflow run: <code>{html.escape(run)}</code>" if run else "MLflow run: (not tracked)",
        f"split: {html.escape(split)}",
        f"task: {html.escape(task)}",
    ]
    if report.get("model"):
        meta.append(f"model: <code>{html.escape(str(report['model']))}</code>")
    meta.append(f"written {_dt.datetime.now().isoformat(timespec='seconds')}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}{' – run ' + html.escape(run) if run else ''}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{" · ".join(meta)}</p>',
        section,
    ]
    for heading, path in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2><figure>{_embed(path)}</figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
