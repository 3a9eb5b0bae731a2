"""Verification at export: each LiteRT/ONNX artefact run by its own runtime next to Keras.

:func:`verify_artefacts` feeds the same uint8 pixels of a split (the test
split by default, the pipeline's deterministic preprocessing) to the Keras
model and to every artefact, and reports per artefact: the task's headline
metric (accuracy, mean IoU, micro F1, mAP@0.5) and its drop from Keras, the agreement
of the arg-max (top-1 for classification, pixels for segmentation, each image's
best box for detection), the largest absolute probability (detection: heatmap)
difference, the file size, and the batch-1 latency (median over interleaved calls: Keras through a ``tf.function``, then
each artefact, image after image, so that load on the machine hits all alike).
What is scored and compared is the task's (the ``verification_*`` methods of
:class:`~kerasflow.tasks.base.Task`); a detection artefact's latency includes its
NMS in NumPy, as the Keras one includes it in the graph.

Example:
    >>> rows = verify_artefacts(model, [written], data, contract)
    >>> rows[1]["top1_agreement"], rows[1]["max_prob_diff"]
    (1.0, 2.9e-07)
"""

from __future__ import annotations

import logging
import time

import numpy as np

from kerasflow import tasks
from kerasflow.errors import VerificationError
from kerasflow.progress import Stage, progress
from kerasflow.serving.artefact_runtime import load_artefact
from kerasflow.tasks.base import Task

log = logging.getLogger(__name__)

LATENCY_CALLS = 100
BATCH = 64


def split_pixels(data, split: str = "test", limit: int | None = None, task=None):
    """``(pixels uint8 N x h x w x c, targets)`` of a split, without augmentation.

    ``task`` (default: the data's own ``labels``) says what the targets are
    (:meth:`~kerasflow.tasks.base.Task.verification_data`: boxes for detection).
    """
    return (task or Task()).verification_data(data, split, limit)


def _batched(run, pixels: np.ndarray) -> dict[str, np.ndarray]:
    parts = [run(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def _median_latencies(calls: dict, pixels: np.ndarray, repeats: int) -> dict[str, float]:
    """Median milliseconds of one batch-1 call per runner, interleaved image by image."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():  # warm-up: first calls allocate
        call(pixels[:1])
    for i in range(repeats):
        one = pixels[i % len(pixels)][None]
        for name, call in calls.items():
            start = time.perf_counter()
            call(one)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


def verify_artefacts(
    model, artefacts, data, contract: dict, split: str = "test", latency_calls=LATENCY_CALLS
) -> list[dict]:
    """The verification table: one row for Keras, one per artefact (see the module docstring).

    Args:
        model: the Keras model the artefacts were converted from.
        artefacts: :class:`~kerasflow.serving.portable.PortableArtefact` (or paths).
        data: the run's prepared data (``dataset(split, training=False, batch=False)``, ``labels``).
        contract: the model's contract.
        split: the split to compare on.
        latency_calls: batch-1 calls per runner for the latency medians (0: no latency).
    """
    task = tasks.get(contract["task"])
    pixels, targets = split_pixels(data, split, task=task)
    if len(pixels) == 0:
        raise VerificationError(f"The {split} split is empty: nothing to verify the export on.")
    keras_answers = task.reference_outputs(model, contract)
    reference = _batched(keras_answers, pixels)
    headline = task.headline
    keras_score = task.verification_score(targets, reference, contract)
    loaded = [load_artefact(getattr(a, "path", a)) for a in artefacts]

    def answers_of(art):
        return lambda x: task.artefact_answers(art.run(x), contract)

    calls = {"keras": keras_answers}
    for i, art in enumerate(loaded):
        calls[f"artefact{i}"] = answers_of(art)
    latency = {}
    if latency_calls:
        with Stage("measuring batch-1 latency", total=len(calls), unit="runner", min_items=1):
            latency = _median_latencies(calls, pixels, latency_calls)
    rows = [
        {
            "format": "keras",
            "quantize": "none",
            "file": "",
            "size_bytes": 0,
            "metric": headline,
            "value": keras_score,
            "metric_drop": 0.0,
            "top1_agreement": 1.0,
            "max_prob_diff": 0.0,
            "latency_ms": latency.get("keras", float("nan")),
            "latency_ratio": 1.0,
            "examples": len(pixels),
        }
    ]
    stage = f"verifying {len(loaded)} artefact(s) on the {split} split"
    for i, art in enumerate(progress(loaded, stage, unit="artefact", min_items=1)):
        answers = _batched(answers_of(art), pixels)
        score = task.verification_score(targets, answers, contract)
        ms = latency.get(f"artefact{i}", float("nan"))
        rows.append(
            {
                "format": art.format,
                "quantize": art.contract.get("quantize", "none"),
                "file": art.path.name,
                "size_bytes": art.size_bytes,
                "metric": headline,
                "value": score,
                "metric_drop": keras_score - score,
                **task.verification_agreement(answers, reference, contract),
                "latency_ms": ms,
                "latency_ratio": ms / rows[0]["latency_ms"] if latency else float("nan"),
                "examples": len(pixels),
            }
        )
    return rows


def check_drop(rows: list[dict], max_metric_drop: float | None) -> None:
    """Raise when an artefact's metric is more than ``max_metric_drop`` below Keras'.

    Raises:
        VerificationError: names each artefact over the limit (exit code 1).
    """
    if max_metric_drop is None:
        return
    over = [r for r in rows[1:] if r["metric_drop"] > max_metric_drop]
    if over:
        detail = "; ".join(
            f"{r['file']}: {r['metric']} {r['value']:.4f} vs Keras {rows[0]['value']:.4f} "
            f"(drop {r['metric_drop']:.4f})"
            for r in over
        )
        raise VerificationError(
            f"Export verification failed, more than --max-metric-drop {max_metric_drop:g} lost: "
            f"{detail}. Try a lighter quantisation (dynamic or float16) or more calibration data."
        )


def table_text(rows: list[dict]) -> str:
    """The verification table as aligned text (what ``kerasflow export`` prints)."""
    head = f"{'artefact':<24} {'metric':>18} {'drop':>8} {'top-1 agree':>11} "
    head += f"{'max |dp|':>9} {'size KB':>9} {'ms (b=1)':>9}"
    lines = [head]
    for r in rows:
        name = r["file"] or "keras"
        metric = f"{r['metric']} {r['value']:.4f}"
        lines.append(
            f"{name:<24} {metric:>18} {r['metric_drop']:>8.4f} {r['top1_agreement']:>11.4f} "
            f"{r['max_prob_diff']:>9.2e} {r['size_bytes'] / 1024:>9.1f} {r['latency_ms']:>9.3f}"
        )
    return "\n".join(lines)


def version_tags(rows: list[dict]) -> dict[str, str]:
    """Tags for the registered model version: each artefact's metric, agreement and size."""
    tags = {}
    for r in rows[1:]:
        key = f"kerasflow.export.{r['format']}.{r['quantize']}"
        tags[f"{key}.{r['metric']}"] = f"{r['value']:.4f}"
        tags[f"{key}.top1_agreement"] = f"{r['top1_agreement']:.4f}"
        tags[f"{key}.max_prob_diff"] = f"{r['max_prob_diff']:.3g}"
        tags[f"{key}.size_bytes"] = str(r["size_bytes"])
        tags[f"{key}.latency_ms"] = f"{r['latency_ms']:.3f}"
    return tags
