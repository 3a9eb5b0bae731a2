"""How far to trust a model: corruption robustness, adversarial robustness, faithful explanations.

``evaluate.robustness: true`` in a run config (or ``kerasflow evaluate MODEL
--robustness``) adds to the report of the evaluated split:

- ``robustness.corruption``: the task's headline score (classification
  accuracy, multi-label micro F1, segmentation mean IoU, detection mAP@0.5)
  under each corruption of :mod:`kerasflow.pipelines.corruptions` at each
  severity, the mean over all and the mean relative to the clean score (any task);
- ``robustness.adversarial``: FGSM and PGD per epsilon with a gradient-masking
  check (:mod:`kerasflow.training.adversarial`; tasks with ``Task.adversarial``);
- ``faithfulness``: deletion and insertion AUC per explanation method against a
  random ranking, and the cascading model-randomisation check
  (:mod:`kerasflow.training.faithfulness`; tasks with ``Task.explainable``);

their figures (``corruption_curves_<split>.png``, ``adversarial_<split>.png``,
``faithfulness_<split>.png``, ``randomization_<split>.png``) and flat metrics
(:func:`scalar_metrics`: ``test_corruption_mean_accuracy``,
``test_pgd_eps4_accuracy``, ``explain_gradcam_deletion_auc``, ...).

This module is task-blind: the task scores a split (``Task.robustness_score``)
and names its attack loss; the corruptions are tf.data ops.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import keras
import numpy as np

from kerasflow.pipelines import corruptions
from kerasflow.tasks import robustness_report
from kerasflow.tasks.base import safe_metric_name

log = logging.getLogger(__name__)


def evaluate_corruptions(
    model, data, split: str, task, contract: dict, section, seed: int = 0
) -> dict:
    """The task's headline score of ``split`` under every corruption and severity.

    Args:
        section: the config's ``evaluate.corruption`` (``names``, ``severities``).

    Returns:
        ``{"metric", "clean", "severities", "scores": {name: [score per severity]},
        "per_corruption": {name: mean}, "mean", "relative"}``; ``relative`` is
        ``mean / clean`` (None when clean is 0).
    """
    clean = task.robustness_score(model, data, split, contract)
    severities = [int(s) for s in section.severities]
    scores: dict[str, list[float]] = {}
    for name in section.names:
        scores[name] = [
            task.robustness_score(
                model,
                data,
                split,
                contract,
                lambda ds, n=name, s=s: corruptions.corrupt_dataset(ds, n, s, seed),
            )
            for s in severities
        ]
    per = {name: float(np.mean(values)) for name, values in scores.items()}
    mean = float(np.mean([v for values in scores.values() for v in values])) if scores else None
    return {
        "metric": task.headline,
        "clean": clean,
        "severities": severities,
        "scores": scores,
        "per_corruption": per,
        "mean": mean,
        "relative": (mean / clean) if (mean is not None and clean) else None,
        "seed": int(seed),
    }


@contextlib.contextmanager
def _timed(result: dict, part: str):
    """Record the wall and CPU seconds of one part in ``result["seconds"|"cpu_seconds"]``."""
    start, cpu = time.perf_counter(), time.process_time()
    yield
    result["seconds"][part] = time.perf_counter() - start
    result["cpu_seconds"][part] = time.process_time() - cpu


def add_robustness(model, data, report: dict, out_dir, task, contract: dict, section) -> dict:
    """Run the enabled parts of ``evaluate`` (``section``) on the report's split; add them to it.

    Writes the figures into ``out_dir`` (when given) and stores timings in
    ``report["robustness"]["seconds"]`` (wall) and ``["cpu_seconds"]`` (process
    CPU). Does nothing unless ``section.robustness``.

    Returns:
        The report (changed in place).
    """
    if section is None or not section.robustness:
        return report
    split = report.get("split", "test")
    seed = int(section.seed)
    result: dict = {"seconds": {}, "cpu_seconds": {}}
    if section.corruption.enabled:
        with _timed(result, "corruption"):
            result["corruption"] = evaluate_corruptions(
                model, data, split, task, contract, section.corruption, seed
            )
    if section.adversarial.enabled and task.adversarial:
        from kerasflow.training import adversarial

        with _timed(result, "adversarial"):
            result["adversarial"] = adversarial.evaluate_attacks(
                model, data, split, task, contract, section.adversarial, seed
            )
    if section.faithfulness.enabled and task.explainable:
        from kerasflow.training import faithfulness

        with _timed(result, "faithfulness"):
            report["faithfulness"] = faithfulness.evaluate_faithfulness(
                model, data, split, section.faithfulness, seed
            )
    report["robustness"] = result
    for part, seconds in result["seconds"].items():
        log.info("robustness: %s took %.1f s", part, seconds)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        robustness_report.write_figures(report, Path(out_dir), split)
    return report


class EpochRobustness(keras.callbacks.Callback):
    """Adds robustness scores of a split to each epoch's logs (``evaluate.epoch_metrics``).

    ``corruption_mean`` runs ``evaluate.corruption``; ``pgd_eps4`` / ``fgsm_eps4``
    attack at that epsilon with ``evaluate.adversarial``'s PGD settings. The
    logs get ``val_corruption_mean_accuracy``, ``val_pgd_eps4_accuracy``, ...
    (the task's headline metric; no ``val_`` on the training split), which a
    ``tune.objective`` or the MLflow callback read like any epoch metric.
    """

    def __init__(self, data, split: str, task, section):
        super().__init__()
        self.data, self.split, self.task, self.section = data, split, task, section
        self.prefix = "val_" if split == "validation" else ""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        names = list(self.section.epoch_metrics)
        contract = self.task.contract(self.model, self.data)
        result: dict = {}
        if "corruption_mean" in names:
            result["corruption"] = evaluate_corruptions(
                self.model, self.data, self.split, self.task, contract,
                self.section.corruption, int(self.section.seed),
            )  # fmt: skip
        epsilons = sorted({float(n.split("_eps")[1]) for n in names if "_eps" in n})
        if epsilons:
            from kerasflow.training import adversarial

            attack = self.section.adversarial.model_copy(update={"epsilons": epsilons})
            result["adversarial"] = adversarial.evaluate_attacks(
                self.model, self.data, self.split, self.task, contract, attack,
                int(self.section.seed),
            )  # fmt: skip
        scores = scalar_metrics({"robustness": result}, self.prefix)
        for name in names:
            logs.update({k: v for k, v in scores.items() if k.startswith(self.prefix + name + "_")})


def epoch_callbacks(cfg, data, split: str) -> tuple:
    """The :class:`EpochRobustness` callback of a run config (none without ``epoch_metrics``)."""
    from kerasflow import tasks

    if not cfg.evaluate.epoch_metrics:
        return ()
    return (EpochRobustness(data, split, tasks.get(cfg.experiment.task), cfg.evaluate),)


def scalar_metrics(report: dict, prefix: str = "test_") -> dict[str, float]:
    """The robustness and faithfulness headline numbers of a report as flat MLflow metrics.

    ``{prefix}corruption_mean_<metric>``, ``{prefix}corruption_relative_<metric>``,
    ``{prefix}corruption_<name>_<metric>`` (mean over severities), the
    adversarial ones (:func:`kerasflow.training.adversarial.scalar_metrics`) and
    ``explain_<method>_deletion_auc`` / ``_insertion_auc`` / ``_randomization_spearman``.
    """
    from kerasflow.training import adversarial, faithfulness

    out: dict[str, float] = {}
    result = report.get("robustness") or {}
    corr = result.get("corruption")
    if corr:
        metric = corr["metric"]
        for key in ("mean", "relative"):
            if corr.get(key) is not None:
                out[f"{prefix}corruption_{key}_{metric}"] = float(corr[key])
        for name, value in corr["per_corruption"].items():
            out[f"{prefix}corruption_{safe_metric_name(name)}_{metric}"] = float(value)
    if result.get("adversarial"):
        out.update(adversarial.scalar_metrics(result["adversarial"], prefix))
    if report.get("faithfulness"):
        out.update(faithfulness.scalar_metrics(report["faithfulness"]))
    return out
