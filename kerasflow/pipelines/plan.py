"""A pipeline as data: an ordered list of :class:`Step`, run into a ``tf.data.Dataset``.

Builders (:mod:`~kerasflow.pipelines.builder`,
:mod:`~kerasflow.pipelines.detection_data`) describe each split's pipeline as
steps; :func:`run_plan` turns them into a dataset, fusing consecutive
per-element steps into one parallel ``map``; :func:`format_plan` prints them
for ``kerasflow data plan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class Step:
    """One step of a pipeline plan.

    Attributes:
        stage: read, decode, deterministic, cache, balance, shuffle, augment, batch,
            batch_ops or prefetch.
        detail: what the step does, for ``kerasflow data plan``.
        element_fn: a function of one element tuple returning a tuple;
            consecutive ones are fused into one parallel ``map``.
        dataset_fn: a function ``Dataset -> Dataset`` (for non-map steps).
        fused: set by :func:`mark_fused` when the step shares a ``map`` with others.
        internal: plumbing (seed handling), not shown in the plan.
    """

    stage: str
    detail: str
    element_fn: Callable | None = None
    dataset_fn: Callable | None = None
    fused: bool = field(default=False, repr=False)
    internal: bool = field(default=False, repr=False)


def compose(fns: list[Callable]) -> Callable:
    """One function of ``*element`` applying each element function of ``fns`` in turn."""

    def run(*element):
        for fn in fns:
            element = fn(element)
        return element

    return run


def run_plan(steps: list[Step], deterministic: bool) -> tf.data.Dataset:
    """Build the dataset that a plan describes.

    Consecutive ``element_fn`` steps run as one ``map`` with
    ``num_parallel_calls=AUTOTUNE`` and ``deterministic``.
    """
    ds, pending = None, []

    def flush(ds):
        if pending:
            ds = ds.map(
                compose(list(pending)), num_parallel_calls=AUTOTUNE, deterministic=deterministic
            )
            pending.clear()
        return ds

    for step in steps:
        if step.element_fn is not None:
            pending.append(step.element_fn)
        elif step.dataset_fn is not None:
            ds = step.dataset_fn(flush(ds))
    return flush(ds)


def mark_fused(steps: list[Step]) -> list[Step]:
    """Mark the steps that :func:`run_plan` fuses into one ``map`` (more than one shown step)."""
    run: list[Step] = []
    for step in [*steps, Step("end", "")]:
        if step.element_fn is not None:
            run.append(step)
            continue
        if step.dataset_fn is None and step.stage != "end":
            continue  # a no-op step (e.g. cache off) does not break a fused map
        if sum(not s.internal for s in run) > 1:
            for s in run:
                s.fused = True
        run = []
    return steps


def format_plan(steps: list[Step]) -> str:
    """Numbered lines, one per step; fused map steps are marked ``[one map]``."""
    lines = []
    for i, step in enumerate((s for s in steps if not s.internal), start=1):
        tag = "  [one map]" if step.fused else ""
        lines.append(f"{i:2d}. {step.stage:<13} {step.detail}{tag}")
    return "\n".join(lines)
