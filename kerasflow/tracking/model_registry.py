"""The MLflow model registry: register a run's model, keep the ``champion`` alias honest, load models.

MODEL arguments accept ``models:/NAME@alias``, ``models:/NAME/VERSION``,
``runs:/RUN_ID/model`` or a path to a ``.keras`` file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kerasflow.errors import ModelError, TrackingError
from kerasflow.tracking.store import resolve_tracking_uri

log = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass
class RegisteredVersion:
    """A registered model version and whether it took the champion alias."""

    name: str
    version: str
    champion: bool
    metric: str
    value: float | None
    previous_champion: str | None = None
    previous_value: float | None = None


def _beats(new: float | None, old: float | None, mode: str) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    return new > old if mode == "max" else new < old


def champion_value(client: MlflowClient, name: str, metric: str) -> tuple[str | None, float | None]:
    """(version, metric value) of the current champion of ``name``, or (None, None)."""
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
    value = client.get_run(mv.run_id).data.metrics.get(metric) if mv.run_id else None
    return str(mv.version), value


def register(
    model_uri: str,
    name: str,
    run_id: str,
    metric: str,
    mode: str = "max",
    uri: str | None = None,
    tags: dict[str, str] | None = None,
) -> RegisteredVersion:
    """Register ``model_uri`` as a new version of ``name``; alias it ``champion`` only if it wins.

    The new version wins when its run's ``metric`` is strictly better (by
    ``mode``) than the current champion's run's value, or when there is no
    champion yet.
    """
    uri = resolve_tracking_uri(uri)
    client = MlflowClient(uri)
    old_version, old_value = champion_value(client, name, metric)
    mlflow.set_tracking_uri(uri)
    mv = mlflow.register_model(model_uri, name, tags=tags)
    value = client.get_run(run_id).data.metrics.get(metric)
    wins = _beats(value, old_value, mode)
    if wins:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    log.info(
        "registered %s version %s (%s=%s); champion: %s",
        name,
        mv.version,
        metric,
        value,
        "yes" if wins else f"no, stays {old_version}",
    )
    return RegisteredVersion(
        name=name,
        version=str(mv.version),
        champion=wins,
        metric=metric,
        value=value,
        previous_champion=old_version,
        previous_value=old_value,
    )


def run_id_of(model: str, uri: str | None = None) -> str | None:
    """The run that produced an MLflow model URI (None for a ``.keras`` path)."""
    client = MlflowClient(resolve_tracking_uri(uri))
    try:
        if model.startswith("runs:/"):
            return model.removeprefix("runs:/").split("/", 1)[0]
        if model.startswith("models:/"):
            rest = model.removeprefix("models:/")
            if "@" in rest:
                name, alias = rest.split("@", 1)
                return client.get_model_version_by_alias(name, alias).run_id
            if "/" in rest:
                name, version = rest.split("/", 1)
                return client.get_model_version(name, version).run_id
            return client.get_logged_model(rest).source_run_id
    except MlflowException as exc:
        raise TrackingError(
            f"Cannot find model {model!r} in the MLflow store: {exc.message}"
        ) from exc
    return None


CUSTOM_OBJECT_MODULES = (
    "kerasflow.models.layers",
    "kerasflow.models.schedules",
    "kerasflow.tasks.losses",
    "kerasflow.tasks.metrics",
    "kerasflow.models.detector",
    "kerasflow.tasks.detection.centernet_loss",
)


def import_custom_objects() -> None:
    """Import the modules whose Keras classes are registered serializable, so models that use them load."""
    import importlib

    for name in CUSTOM_OBJECT_MODULES:
        importlib.import_module(name)


def load_model(model: str, uri: str | None = None):
    """Load a Keras model from an MLflow URI or a ``.keras`` file (``safe_mode=True``)."""
    import keras

    import_custom_objects()
    if model.startswith(("models:/", "runs:/")):
        mlflow.set_tracking_uri(resolve_tracking_uri(uri))
        try:
            return mlflow.keras.load_model(model)
        except MlflowException as exc:
            raise TrackingError(f"Cannot load model {model!r}: {exc.message}") from exc
    path = Path(model)
    if path.suffix != ".keras":
        raise ModelError(
            f"MODEL must be models:/NAME@alias, models:/NAME/VERSION, runs:/RUN_ID/model or a "
            f".keras file. Received: {model!r}"
        )
    if not path.is_file():
        raise ModelError(f"Model file not found: {path}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, OSError) as exc:
        raise ModelError(f"Cannot load {path} safely: {exc}") from exc


def run_config_text(model: str, uri: str | None = None) -> str | None:
    """The ``config.yaml`` logged with the run that produced ``model`` (None if there is none)."""
    run_id = run_id_of(model, uri)
    if run_id is None:
        return None
    mlflow.set_tracking_uri(resolve_tracking_uri(uri))
    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except MlflowException:
        return None


def config_for_model(model: str, config=None, overrides=None, uri: str | None = None):
    """The run config to use with ``model``: the one given, or the one logged with its run.

    Args:
        config: a :class:`~kerasflow.config.RunConfig`, a YAML path, or None for
            the ``config.yaml`` logged with the model's MLflow run.

    Raises:
        ConfigError: no config given and the model has no logged one.
    """
    import yaml

    from kerasflow.config import as_config, build_config
    from kerasflow.errors import ConfigError

    if config is not None:
        return as_config(config, overrides)
    text = run_config_text(model, uri)
    if text is None:
        raise ConfigError(f"{model} has no logged run config; pass --config CONFIG.")
    return build_config(yaml.safe_load(text), overrides, origin=f"(config of {model})")
