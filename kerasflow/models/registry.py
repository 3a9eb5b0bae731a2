"""One name-to-factory registry for every model family.

The CLI, the tuner, the config validator and the tests all use this registry.
Names are registered lazily as ``"module:function"`` strings so that listing
or validating names never imports TensorFlow.

Example:
    >>> from kerasflow import models
    >>> model = models.build("simple_cnn", (8, 8, 1), 10)
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

from kerasflow.errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model name."""

    name: str
    target: str  # "kerasflow.models.module:function"
    kind: str = "classification"  # classification, segmentation or detection
    defaults: dict[str, Any] = field(default_factory=dict)

    def factory(self):
        module_name, func_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), func_name)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, target: str, kind: str = "classification", **defaults: Any) -> None:
    """Register ``name`` as a model built by ``target`` (``"module:function"``).

    ``defaults`` are keyword arguments passed to the factory before the user's
    params, which lets one builder back several names (``resnet18``, ``resnet50``).
    """
    if name in _REGISTRY and _REGISTRY[name].target != target:
        raise ValueError(f"Model name {name!r} is already registered. Received: target={target}")
    _REGISTRY[name] = ModelSpec(name=name, target=target, kind=kind, defaults=dict(defaults))


def names(kind: str | None = None) -> list[str]:
    """Sorted registered model names, optionally only those of one kind (``classification``,
    ``segmentation``, ``detection``; a multi-label task trains classification models)."""
    return sorted(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def get_spec(name: str) -> ModelSpec:
    """The spec for ``name``; a clear :class:`ModelError` listing the choices otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"Unknown model name {name!r}.{hint} Choose one of: {', '.join(names())}."
        ) from None


def build(
    name: str,
    input_shape,
    num_classes: int,
    *,
    model_name: str | None = None,
    input_scaling=None,
    output_activation: str = "softmax",
    **params: Any,
):
    """Build an uncompiled functional ``keras.Model`` by registry name.

    Args:
        name: a registered name, see :func:`names`.
        input_shape: ``(height, width, channels)``.
        num_classes: number of output classes.
        model_name: name of the model and prefix of its layer names; defaults
            to ``name`` (segmentation models use it to nest an encoder).
        input_scaling: how the model scales its input pixels in its first layer
            (``f"{name}_scaling"``, a ``keras.layers.Rescaling``): a data config
            (its ``normalize``, ``mean``, ``std``; pass ``cfg.data`` to feed the
            model from kerasflow pipelines, which yield uint8 pixels) or a
            ``(scale, offset)`` pair of per-channel lists. ``None``: no scaling
            layer; the model takes its input as given.
        output_activation: ``softmax`` (one class per image or pixel) or
            ``sigmoid`` (independent labels: multi-label classification).
        **params: family-specific options (width, dropout, alpha, ...).

    Raises:
        ModelError: unknown name, or parameters the family rejects.

    Example:
        >>> model = build("simple_cnn", (8, 8, 1), 10, input_scaling=cfg.data)
    """
    from kerasflow.models.layers import input_scaling as scaling_scope
    from kerasflow.models.layers import output_activation as activation_scope

    spec = get_spec(name)
    kwargs = {**spec.defaults, **params}
    scope = contextlib.nullcontext()
    if input_scaling is not None:
        if hasattr(input_scaling, "normalize"):
            from kerasflow.pipelines.transforms import input_scaling as affine

            input_scaling = affine(input_scaling, channels=tuple(input_shape)[-1])
        scope = scaling_scope(input_scaling)
    try:
        with scope, activation_scope(output_activation):
            return spec.factory()(
                input_shape=tuple(input_shape),
                num_classes=int(num_classes),
                name=model_name or name,
                **kwargs,
            )
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"Bad parameters for model {name!r}: {exc} Received: params={params}"
        ) from exc
