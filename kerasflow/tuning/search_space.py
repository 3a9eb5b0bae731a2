"""Applying a search space (:mod:`kerasflow.space`) to run configs and to Keras Tuner.

A trial's run config is the base config with the trial's active values set
at their paths. When a trial changes ``model.name``, the base config's
``model.params`` belong to another model, so they are dropped first and the
trial starts from the new model's defaults plus its ``model.params.*``
values. :func:`declare` is the one place that talks to Keras Tuner's
``HyperParameters``.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from kerasflow.errors import ConfigError
from kerasflow.space import (
    ParamSpec,
    active_values,
    first_values,
    is_active,
    parse_space,
    space_fingerprint,
)

__all__ = [
    "ParamSpec",
    "active_values",
    "apply_values",
    "declare",
    "first_values",
    "is_active",
    "parse_space",
    "space_fingerprint",
    "validate_space",
]


def apply_values(
    base: dict[str, Any], specs: list[ParamSpec], values: dict[str, Any]
) -> dict[str, Any]:
    """The trial's raw run config: ``base`` with the active ``values`` set at their paths.

    ``tune`` is dropped (a trial is a plain run). Values that are not
    parameters of ``specs`` (Keras Tuner's own ``tuner/...`` entries) are ignored.
    """
    from kerasflow.config import set_dotted

    data = copy.deepcopy(base)
    data.pop("tune", None)
    chosen = active_values(specs, values)
    model = data.get("model") or {}
    base_name = model.get("name", "simple_cnn") if isinstance(model, dict) else None
    if "model.name" in chosen and chosen["model.name"] != base_name:
        data.setdefault("model", {})["params"] = {}
    for path, value in chosen.items():
        set_dotted(data, path.split("."), value)
    return data


def validate_space(base: dict[str, Any], specs: list[ParamSpec]) -> None:
    """Fail early on a bad path or value: build the run config with each parameter active.

    For every parameter, each of its choices (or both ends of its range) is
    applied to ``base`` with the other parameters at their first values and its
    parents set so that it is active, and validated as a run config; the
    model's ``model.params`` are checked against the model builder's arguments.

    Raises:
        ConfigError: naming the parameter's path and the config's complaint.
    """
    from kerasflow.config import build_config

    if not specs:
        raise ConfigError(
            "tune.space is empty. Add at least one parameter, e.g. "
            "model.params.width: {choice: [16, 32]}."
        )
    for spec in specs:
        probes = spec.choices or (spec.low, spec.high)
        for probe in probes:
            values = first_values(specs, spec)
            values[spec.path] = probe
            data = apply_values(base, specs, values)
            try:
                cfg = build_config(data, origin=f"for tune.space[{spec.path!r}]")
            except ConfigError as exc:
                raise ConfigError(
                    f"tune.space[{spec.path!r}] = {probe!r} does not make a valid run "
                    f"config. Check the path and the values.\n{exc}"
                ) from None
            _check_model_params(cfg, values, spec)


def _check_model_params(cfg, values: dict[str, Any], spec: ParamSpec) -> None:
    from kerasflow import models

    try:
        factory = models.get_spec(cfg.model.name).factory()
    except Exception:  # noqa: BLE001 - an unknown model is reported by the config itself
        return
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = set(params) - {"input_shape", "num_classes", "name"}
    for key in cfg.model.params:
        if key not in accepted:
            path = f"model.params.{key}"
            where = path if path in values else spec.path
            raise ConfigError(
                f"tune.space[{where!r}]: model {cfg.model.name!r} has no parameter {key!r}. "
                f"Its parameters: {', '.join(sorted(accepted))}. Received: {key}="
                f"{cfg.model.params[key]!r}"
            )


def declare(hp, specs: list[ParamSpec]) -> None:
    """Declare ``specs`` on a Keras Tuner ``HyperParameters`` (conditions as nested scopes)."""
    import contextlib

    for spec in specs:
        with contextlib.ExitStack() as stack:
            for parent, ok in spec.when.items():
                stack.enter_context(hp.conditional_scope(parent, list(ok)))
            _declare_one(hp, spec)


def _declare_one(hp, spec: ParamSpec) -> None:
    if spec.kind == "choice":
        hp.Choice(spec.path, list(spec.values), ordered=spec.ordered, default=spec.default)
    elif spec.kind == "int":
        hp.Int(
            spec.path,
            int(spec.low),
            int(spec.high),
            step=int(spec.step) if spec.step else None,
            sampling=spec.sampling,
            default=spec.default,
        )
    elif spec.kind == "float":
        hp.Float(
            spec.path,
            spec.low,
            spec.high,
            step=spec.step,
            sampling=spec.sampling,
            default=spec.default,
        )
    elif spec.kind == "boolean":
        hp.Boolean(spec.path, default=bool(spec.default))
    else:
        hp.Fixed(spec.path, spec.values[0])
