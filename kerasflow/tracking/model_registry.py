"""The MLflow model registry: register a run's model, keep the ``champion`` alias honest, load models.

MODEL arguments accept ``models:/NAME@alias``, ``models:/NAME/VERSION``,
``runs:/RUN_ID/model`` or a path to a ``.keras`` file. A logged model carries
its contract (task, class names, task extras such as multi-label thresholds)
as ``contract.json`` in its run: :func:`load_contract` reads it, so loading a
model never needs its training data.
"""

from __future__ import annotations

import json
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kerasflow.errors import ModelError, TrackingError
from kerasflow.tracking.locks import registry_lock
from kerasflow.tracking.store import resolve_tracking_uri

log = logging.getLogger(__name__)

CHAMPION = "champion"
CONTRACT_FILE = "contract.json"
# Tags of a registered version: where its contract is, and why it is not champion.
CONTRACT_TAG = "kerasflow.contract_uri"
NOT_CHAMPION_TAG = "kerasflow.not_champion"

# Keras models returned by load_model -> (MODEL argument, tracking URI), so that
# code holding only the Keras object can still find the contract stored with it.
_LOADED_FROM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    not_champion_reason: str | None = None
    # Why it is not champion, whatever the cause (the gate's reason, or the champion's score).
    reason: str | None = None


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
    gate=None,
) -> RegisteredVersion:
    """Register ``model_uri`` as a new version of ``name``; alias it ``champion`` only if it wins.

    The new version wins when it passes ``gate`` and its run's ``metric`` is
    strictly better (by ``mode``) than the current champion's run's value, or
    when there is no champion yet.

    Atomic with respect to other kerasflow processes on the same store: for a
    local store the champion is read, the version registered and the alias
    moved under ``registry.lock`` beside the database
    (:func:`~kerasflow.tracking.locks.registry_lock`); against a tracking
    server, the alias is re-checked after it moves and handed to the best
    version if a concurrent registration outscored this one. The returned
    ``champion`` is the truth after that, and ``reason`` says why not.

    Args:
        gate: the sanity check before crowning
            (:class:`~kerasflow.tasks.base.ChanceCheck`: ``passed`` and ``reason``).
            A version that fails it is registered, never aliased: it is tagged
            ``kerasflow.not_champion`` with the reason and a warning is logged.
    """
    uri = resolve_tracking_uri(uri)
    client = MlflowClient(uri)
    blocked = None if gate is None or gate.passed else gate.reason
    version_tags = dict(tags or {})
    if blocked:
        version_tags[NOT_CHAMPION_TAG] = blocked
    mlflow.set_tracking_uri(uri)
    # Read the champion, register, move the alias: one step for every kerasflow process on
    # this store, so two registrations cannot both be told "champion".
    with registry_lock(uri) as locked:
        old_version, old_value = champion_value(client, name, metric)
        mv = mlflow.register_model(model_uri, name, tags=version_tags or None)
        value = client.get_run(run_id).data.metrics.get(metric)
        wins = blocked is None and _beats(value, old_value, mode)
        if wins:
            client.set_registered_model_alias(name, CHAMPION, mv.version)
    if wins and not locked:
        wins, old_version, old_value = _recheck(client, name, str(mv.version), metric, mode)
    reason = blocked
    if not wins and not blocked:
        reason = (
            f"{metric} {_fmt(value)} does not beat champion version {old_version} "
            f"({metric} {_fmt(old_value)})"
        )
    if blocked:
        log.warning("registered %s version %s but NOT as champion: %s", name, mv.version, blocked)
    else:
        log.info(
            "registered %s version %s (%s=%s); champion: %s",
            name,
            mv.version,
            metric,
            value,
            "yes" if wins else f"no, {reason}",
        )
    return RegisteredVersion(
        name=name,
        version=str(mv.version),
        champion=wins,
        metric=metric,
        value=value,
        previous_champion=old_version,
        previous_value=old_value,
        not_champion_reason=blocked,
        reason=None if wins else reason,
    )


def _fmt(value: float | None) -> str:
    return "(none)" if value is None else f"{value:.4f}"


def _recheck(
    client: MlflowClient, name: str, version: str, metric: str, mode: str
) -> tuple[bool, str | None, float | None]:
    """Compare-and-set for a tracking server (no shared lock file): after taking the alias,
    hand it to the best gated version if a concurrent registration outscored this one.

    Returns whether ``version`` holds the alias at the end, and the version and value that do.
    """
    run_id = client.get_model_version(name, version).run_id
    best, best_value = version, client.get_run(run_id).data.metrics.get(metric)
    for mv in client.search_model_versions(f"name = '{name}'"):
        if NOT_CHAMPION_TAG in (mv.tags or {}) or not mv.run_id:
            continue
        other = client.get_run(mv.run_id).data.metrics.get(metric)
        if _beats(other, best_value, mode):
            best, best_value = str(mv.version), other
    if best != version:
        client.set_registered_model_alias(name, CHAMPION, best)
    holder, held_value = champion_value(client, name, metric)
    return holder == version, holder, held_value


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


def registered_version_of(model: str, uri: str | None = None) -> tuple[str, str] | None:
    """``(name, version)`` of a ``models:/NAME/VERSION`` or ``models:/NAME@alias`` URI, else None."""
    rest = model.removeprefix("models:/") if model.startswith("models:/") else None
    if rest is None or ("@" not in rest and "/" not in rest):
        return None
    if "@" in rest:
        name, alias = rest.split("@", 1)
        client = MlflowClient(resolve_tracking_uri(uri))
        try:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            raise TrackingError(f"Cannot find model {model!r}: {exc.message}") from exc
    name, version = rest.split("/", 1)
    return name, version


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
    import tempfile

    import keras

    import_custom_objects()
    if model.startswith(("models:/", "runs:/")):
        uri = resolve_tracking_uri(uri)
        mlflow.set_tracking_uri(uri)
        with tempfile.TemporaryDirectory(prefix="kerasflow-load-") as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=tmp)
                _check_keras_flavor(model, Path(local))
                loaded = mlflow.keras.load_model(local, load_model_kwargs={"safe_mode": True})
            except MlflowException as exc:
                raise TrackingError(f"Cannot load model {model!r}: {exc.message}") from exc
        _LOADED_FROM[loaded] = (model, uri)
        return loaded
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


def _check_keras_flavor(model: str, folder: Path) -> None:
    """Accept an MLflow model folder only when its Keras flavor is a ``.keras`` file.

    MLflow's Keras flavor can also hold an exported SavedModel
    (``save_exported_model``), which it loads with ``tf.saved_model.load``: a
    graph is code, and kerasflow never logs one there, so it is refused before
    loading (``kerasflow serve`` checks SavedModels by their digest instead).
    """
    import yaml

    try:
        spec = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"{model} has no readable MLmodel file ({exc}).") from None
    flavor = (spec.get("flavors") or {}).get("keras") if isinstance(spec, dict) else None
    if not isinstance(flavor, dict):
        raise ModelError(
            f"{model} is not a Keras model (its MLmodel has no keras flavor). Pass the "
            "model a kerasflow run logged (runs:/RUN_ID/model or a registered version)."
        )
    path = folder / str(flavor.get("data", "model"))  # where MLflow's Keras loader looks
    if path.is_dir():
        path = path / "model"
    keras_file = path.with_name(path.name + ".keras")
    inside = keras_file.resolve().is_relative_to(folder.resolve())
    if flavor.get("save_exported_model") or not inside or not keras_file.is_file():
        raise ModelError(
            f"{model} is refused: its Keras flavor is not a .keras file (an exported "
            "SavedModel is a graph, and a graph is code). kerasflow loads Keras models only "
            "from .keras files, with safe_mode; serve a SavedModel with `kerasflow serve`, "
            "which checks its digest."
        )


def download_keras_file(model: str, dst: str | Path, uri: str | None = None) -> Path:
    """Download an MLflow model's files to ``dst`` and return its ``.keras`` file.

    Nothing of the folder is imported or run: callers read the ``.keras`` file
    as data (``safe_mode=True``). Used by ``model.pretrained``.

    Raises:
        TrackingError: the model cannot be found, or holds no ``.keras`` file
            (it is not a kerasflow Keras model).
    """
    mlflow.set_tracking_uri(resolve_tracking_uri(uri))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=str(dst))
    except MlflowException as exc:
        raise TrackingError(f"Cannot download model {model!r}: {exc.message}") from exc
    files = sorted(Path(local).rglob("*.keras"))
    if len(files) != 1:
        raise TrackingError(
            f"{model} is not a kerasflow Keras model: expected one .keras file in its folder, "
            f"found {len(files)}. Give the URI of a model logged by kerasflow train."
        )
    return files[0]


def loaded_from(model) -> tuple[str, str] | None:
    """``(MODEL argument, tracking URI)`` of a Keras model that :func:`load_model` loaded from MLflow."""
    try:
        return _LOADED_FROM.get(model)
    except TypeError:  # not weak-referenceable: not one of ours
        return None


def load_contract(model, uri: str | None = None) -> dict | None:
    """The contract stored with an MLflow model, or None where there is none.

    Args:
        model: ``models:/...`` or ``runs:/...`` URI, or a Keras model that
            :func:`load_model` loaded from one. A ``.keras`` path (or any other
            model) has no stored contract: None.
        uri: tracking store (ignored for a loaded model, which remembers its own).

    Raises:
        TrackingError: the model's run cannot be found, or its ``contract.json``
            is not a JSON object with ``task`` and ``class_names``.
    """
    if not isinstance(model, str):
        source = loaded_from(model)
        if source is None:
            return None
        model, uri = source
    if not model.startswith(("models:/", "runs:/")):
        return None
    run_id = run_id_of(model, uri)
    if run_id is None:
        return None
    mlflow.set_tracking_uri(resolve_tracking_uri(uri))
    where = f"runs:/{run_id}/{CONTRACT_FILE}"
    try:
        text = mlflow.artifacts.load_text(where)
    except MlflowException:
        log.info("%s has no stored contract (%s); it predates contracts", model, where)
        return None
    try:
        contract = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrackingError(
            f"The contract {where} of {model} is not valid JSON ({exc}). Re-run its training "
            "or pass --config with data.source to rebuild it."
        ) from exc
    if not isinstance(contract, dict) or not {"task", "class_names"} <= set(contract):
        raise TrackingError(
            f"The contract {where} of {model} must be an object with 'task' and "
            f"'class_names'. Received: {text[:200]!r}"
        )
    return contract


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
