"""One name-to-factory registry for every model family.

The CLI, the tuner, the config validator and the tests all use this registry.
Names are registered lazily as ``"module:function"`` strings so that listing
or validating names never imports TensorFlow.

Example:
    >>> from kerasflow import models
    >>> model = models.build("simple_cnn", (8, 8, 1), 10)
"""

from __future__ import annotations

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
    task: str = "classification"
    defaults: dict[str, Any] = field(default_factory=dict)

    def factory(self):
        module_name, func_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), func_name)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, target: str, task: str = "classification", **defaults: Any) -> None:
    """Register ``name`` as a model built by ``target`` (``"module:function"``).

    ``defaults`` are keyword arguments passed to the factory before the user's
    params, which lets one builder back several names (``resnet18``, ``resnet50``).
    """
    if name in _REGISTRY and _REGISTRY[name].target != target:
        raise ValueError(f"Model name {name!r} is already registered. Received: target={target}")
    _REGISTRY[name] = ModelSpec(name=name, target=target, task=task, defaults=dict(defaults))


def names(task: str | None = None) -> list[str]:
    """Sorted registered model names, optionally only those of one task."""
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


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
    name: str, input_shape, num_classes: int, *, model_name: str | None = None, **params: Any
):
    """Build an uncompiled functional ``keras.Model`` by registry name.

    Args:
        name: a registered name, see :func:`names`.
        input_shape: ``(height, width, channels)``.
        num_classes: number of output classes.
        model_name: name of the model and prefix of its layer names; defaults
            to ``name`` (segmentation models use it to nest an encoder).
        **params: family-specific options (width, dropout, alpha, ...).

    Raises:
        ModelError: unknown name, or parameters the family rejects.
    """
    spec = get_spec(name)
    kwargs = {**spec.defaults, **params}
    try:
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
