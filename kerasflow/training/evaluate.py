"""Evaluation of a trained model, for every task: report, figures, HTML page, explanations.

The task computes the report and its figures
(:meth:`kerasflow.tasks.base.Task.evaluate`); this module writes
``evaluation_<split>.json`` and the self-contained ``report_<split>.html``
(the task's tables, then every figure found in the folder), adds
explanation overlays where the task supports them, and evaluates saved or
registered models (``kerasflow evaluate``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kerasflow.errors import DataError
from kerasflow.tasks import report_html, robustness_report

log = logging.getLogger(__name__)


def write_report_files(report: dict, out_dir, split: str, task, run_id: str | None = None) -> Path:
    """Write ``evaluation_<split>.json`` and ``report_<split>.html`` (figures found in ``out_dir``).

    Returns:
        The HTML report's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if run_id:
        report["run_id"] = run_id
    (out / f"evaluation_{split}.json").write_text(json.dumps(report, indent=2))
    html = report_html.render(
        report,
        report_html.figures_in(out, split),
        task.html_section(report) + robustness_report.html_section(report),
        run_id=run_id or report.get("run_id"),
    )
    path = out / f"report_{split}.html"
    path.write_text(html, encoding="utf-8")
    return path


def evaluate_split(
    model,
    data,
    split: str,
    task,
    contract: dict,
    out_dir=None,
    *,
    run_id: str | None = None,
) -> dict:
    """Evaluate on one split through the task and, with ``out_dir``, write the report there.

    Files: ``evaluation_<split>.json``, the task's figures (``*_<split>.png``)
    and ``report_<split>.html`` with every figure embedded.

    Args:
        data: the task's data (:meth:`~kerasflow.tasks.base.Task.training_data` or prepared).
        task: the :class:`~kerasflow.tasks.base.Task`.
        contract: the model's contract (class names, thresholds, ...).
        run_id: the MLflow run the report belongs to (named in the HTML page).
    """
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    report = task.evaluate(model, data, split, contract, out)
    report["split"] = split
    report["task"] = task.name
    if run_id:
        report["run_id"] = run_id
    if out is not None:
        write_report_files(report, out, split, task, run_id)
    return report


def add_run_explanations(
    model, data, report: dict, out_dir, task, train_config=None, run_id: str | None = None
) -> list[Path]:
    """Explanation overlays for a few images of the report's split, then the HTML again.

    Called right after :func:`evaluate_split`: writes
    ``explanations_<split>_<method>.png`` (``train.explain_images`` images,
    ``train.explain_method``; 0 images turns it off; tasks with image-level
    outputs only) and rewrites ``report_<split>.html`` with those overlays,
    the test loss and the run id.

    Returns:
        The overlay files written.
    """
    from kerasflow.training import explain

    split = report.get("split", "test")
    count = int(getattr(train_config, "explain_images", 4))
    method = getattr(train_config, "explain_method", "gradcam")
    written: list[Path] = []
    if task.explainable and count > 0:
        written = explain.write_split_explanations(
            model, data, out_dir, split=split, count=count, method=method
        )
    write_report_files(report, out_dir, split, task, run_id)
    return written


def _prepare_to_evaluate(model: str, cfg, task):
    """The config's data for evaluation, with an error that says evaluation needs it."""
    try:
        return task.prepare(cfg.data, cfg.experiment.seed)
    except DataError as exc:
        raise DataError(
            f"Evaluating {model} reads the {task.name} data to score it on, and data.source "
            f"{cfg.data.source!r} cannot be read: {exc} (The model's class names travel with "
            "it; its evaluation data does not.) Point data.source at the data: --set "
            "data.source=<folder or manifest>, or pass --config."
        ) from exc


def config_for_new_data(cfg, data_source: str, contract: dict | None):
    """``cfg`` reading all of ``data_source`` as the test split, with the model's class names.

    The model's preprocessing (image size, channels, normalisation) stays as trained; the
    class names come from its contract, so a folder holding only some of the classes, or
    in another order, is scored against the right labels.
    """
    from kerasflow.config import build_config

    data = cfg.to_dict()
    data["data"]["source"] = str(data_source)
    data["data"]["split"] = {
        **data["data"]["split"],
        "mode": "fractions",
        "train": 0.0,
        "validation": 0.0,
        "test": 1.0,
        "stratify": False,
    }
    if contract is not None:
        data["data"]["class_names"] = [str(c) for c in contract["class_names"]]
    return build_config(data, origin=f"(--data {data_source})")


def evaluate_model(
    model: str,
    config=None,
    split: str = "test",
    out_dir=None,
    overrides=None,
    log_to_run: bool = False,
    data_source: str | None = None,
):
    """Evaluate a saved or registered model on one split of its data.

    Args:
        model: ``models:/NAME@alias``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/model`` or a ``.keras`` path.
        config: the run config (path or :class:`RunConfig`); default: the config logged with the model's run.
        split: ``train``, ``validation`` or ``test``.
        out_dir: where the report files go (default ``./evaluation/<split>``).
        log_to_run: also log the report files to the model's MLflow run, under
            ``evaluation/<split>/``.
        data_source: a folder or manifest to evaluate on, all of it (``split`` is
            ignored), with the model's stored class names and preprocessing; the
            original ``data.source`` is not read.

    Like a training run's report, it includes ``train.explain_images`` explanation
    overlays (classification), and with ``evaluate.robustness`` the corruption,
    adversarial and faithfulness results (:mod:`kerasflow.training.robustness`). An MLflow model is scored with the contract
    stored with it (class names, thresholds); only a bare ``.keras`` file has its
    contract derived from the data again.

    Raises:
        DataError: ``data.source`` cannot be read (the message says how to point
            it elsewhere), or its classes are not the model's.

    Returns:
        (report, out_dir); the HTML page is ``out_dir / f"report_{split}.html"``.
    """
    from kerasflow import tasks
    from kerasflow.tracking import model_registry as registry
    from kerasflow.training import robustness

    cfg = registry.config_for_model(model, config, overrides)
    keras_model = registry.load_model(model, cfg.tracking.uri)
    run_id = registry.run_id_of(model, cfg.tracking.uri)
    stored = registry.load_contract(model, cfg.tracking.uri)
    task = tasks.get(stored["task"] if stored else cfg.experiment.task)
    if data_source is not None:
        cfg, split = config_for_new_data(cfg, data_source, stored), "test"
    data = task.training_data(_prepare_to_evaluate(model, cfg, task), keras_model)
    if stored is None:  # a bare .keras file (or a run that predates contracts)
        contract = {**task.contract(keras_model, data), "preprocessing": cfg.data.preprocessing()}
    else:
        contract = stored
        if [str(c) for c in data.class_names] != contract["class_names"]:
            raise DataError(
                f"data.source {cfg.data.source!r} has classes {list(data.class_names)[:20]} but "
                f"{model} was trained on {contract['class_names'][:20]}; its predictions would be "
                "scored against the wrong labels. Evaluate on data with the model's classes "
                "(set data.class_names to them, or --set data.source=<folder or manifest>)."
            )
    out = Path(out_dir) if out_dir else Path("evaluation") / split
    report = evaluate_split(keras_model, data, split, task, contract, out_dir=out, run_id=run_id)
    report["model"] = model
    robustness.add_robustness(keras_model, data, report, out, task, contract, cfg.evaluate)
    add_run_explanations(keras_model, data, report, out, task, cfg.train, run_id)
    if log_to_run:
        from kerasflow.errors import TrackingError
        from kerasflow.tracking import RunTracker
        from kerasflow.tracking.store import resolve_tracking_uri

        if run_id is None:
            raise TrackingError(f"{model} is not an MLflow model; there is no run to log to.")
        tracker = RunTracker(resolve_tracking_uri(cfg.tracking.uri), run_id)
        tracker.log_metrics(robustness.scalar_metrics(report, prefix=f"{split}_"))
        for path in sorted(out.iterdir()):
            if path.is_file():
                tracker.log_artifact(path, f"evaluation/{split}")
    return report, out
