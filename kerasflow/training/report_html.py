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


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(
        f'<th class="name">{html.escape(h)}</th>' if i == 0 else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="name">{_fmt(v)}</td>' if i == 0 else f"<td>{_fmt(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


SUMMARY_KEYS = (
    ("num_examples", "examples"),
    ("map50", "mAP@0.5"),
    ("map75", "mAP@0.75"),
    ("map", "mAP@[0.5:0.95] (COCO)"),
    ("accuracy", "accuracy"),
    ("top3_accuracy", "top-3 accuracy"),
    ("top5_accuracy", "top-5 accuracy"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
    ("macro_f1", "macro F1"),
    ("weighted_precision", "weighted precision"),
    ("weighted_recall", "weighted recall"),
    ("weighted_f1", "weighted F1"),
    ("macro_roc_auc", "macro ROC AUC (one vs rest)"),
    ("macro_average_precision", "macro average precision"),
    ("expected_calibration_error", "expected calibration error"),
    ("pixel_accuracy", "pixel accuracy"),
    ("mean_iou", "mean IoU"),
    ("mean_dice", "mean Dice"),
    ("loss", "loss"),
)


def render(
    report: dict, figures: list[tuple[str, Path]], run_id: str | None = None, title: str = ""
) -> str:
    """The HTML page of one evaluation report.

    Args:
        report: a report from :func:`kerasflow.training.evaluate.classification_report`,
            ``segmentation_report`` or :func:`kerasflow.training.map.mean_average_precision`
            (with ``split`` and ``task``).
        figures: ``(heading, png_path)`` pairs, embedded in that order.
        run_id: the MLflow run named at the top of the page.
        title: page title (default: "Evaluation report").
    """
    split = report.get("split", "test")
    task = report.get("task", "classification")
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
        "<h2>Summary</h2>",
        _table(
            ["metric", "value"],
            [[label, report[key]] for key, label in SUMMARY_KEYS if key in report],
        ),
        "<h2>Per class</h2>",
    ]
    per_class = report.get("per_class", {})
    if task == "segmentation":
        rows = [[n, v["iou"], v["dice"], v["pixels"]] for n, v in per_class.items()]
        parts.append(_table(["class", "IoU", "Dice", "pixels"], rows))
    elif task == "detection":
        rows = [
            [n, v["ap50"], v["ap75"], v["ap"], v["num_gt"], v["num_detections"]]
            for n, v in per_class.items()
        ]
        headers = ["class", "AP@0.5", "AP@0.75", "AP@[0.5:0.95]", "true boxes", "detections"]
        parts.append(_table(headers, rows))
    else:
        rows = [
            [
                n,
                v["precision"],
                v["recall"],
                v["f1"],
                v.get("roc_auc"),
                v.get("average_precision"),
                v["support"],
            ]
            for n, v in per_class.items()
        ]
        parts.append(
            _table(["class", "precision", "recall", "F1", "ROC AUC", "AP", "support"], rows)
        )
    for heading, path in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2><figure>{_embed(path)}</figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
