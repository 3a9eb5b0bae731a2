"""Export a trained model as a TensorFlow SavedModel in the TF Serving layout.

``export(MODEL, out=DIR)`` writes ``DIR/<version>/saved_model.pb`` with three
signatures (see :mod:`kerasflow.serving.signatures`): ``serving_default``
takes encoded image bytes, ``predict_images`` decoded uint8 images of any
size, ``predict_tensor`` the model's own float input. The class names are a
constant inside the graph (the ``class_name`` output) and are also written to
``assets/class_names.txt``; ``assets/kerasflow.json`` records the task, the
data config and the signatures.

Example:
    >>> import kerasflow
    >>> path = kerasflow.export("models:/digits-cnn@champion", out="export/digits")
    >>> path.name
    '1'
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kerasflow.errors import ConfigError, DataError, ServingError
from kerasflow.serving.signatures import SIGNATURES, serving_functions

log = logging.getLogger(__name__)

METADATA_FILE = "kerasflow.json"
CLASS_NAMES_FILE = "class_names.txt"


@dataclass
class ExportedModel:
    """Where an export went and what it serves."""

    path: Path
    version: int
    class_names: list[str]
    task: str


def next_version(base_dir: str | os.PathLike) -> int:
    """One more than the highest numeric version folder under ``base_dir`` (1 when none)."""
    base = Path(base_dir)
    numbers = (
        [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
        if base.is_dir()
        else []
    )
    return max(numbers, default=0) + 1


def _check_shapes(model, data_config, class_names: list[str], task: str) -> None:
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    want = (*(int(v) for v in data_config.image_size), int(data_config.channels))
    if shape is not None and tuple(int(v) if v is not None else v for v in shape) != want:
        raise ServingError(
            f"The model's input shape {shape} does not match data.image_size and data.channels "
            f"{want} of the run config. Export with the config the model was trained with."
        )
    classes = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if classes is not None and classes != len(class_names):
        raise ServingError(
            f"The model predicts {classes} classes but the config names {len(class_names)}: "
            f"{class_names[:10]}. Set data.class_names to the model's classes."
        )
    if task not in ("classification", "segmentation"):
        raise ServingError(
            f"Export supports classification and segmentation models. Received: task={task!r}"
        )


def export_saved_model(
    model,
    out: str | os.PathLike,
    data_config,
    class_names: list[str],
    task: str = "classification",
    version: int | None = None,
) -> ExportedModel:
    """Write ``model`` with the serving signatures to ``out/<version>/``.

    Args:
        model: an in-memory Keras model (probabilities out).
        out: the TF Serving base folder; each version is a numbered subfolder.
        data_config: the :class:`~kerasflow.config.DataConfig` it was trained with.
        class_names: one name per class.
        task: ``classification`` or ``segmentation``.
        version: the version folder (default: the next free number).

    Raises:
        ServingError: the version folder exists, or the model does not fit the config.
    """
    import keras

    if task == "detection":
        from kerasflow.serving.detection import export_detection

        return export_detection(model, out, data_config, class_names, version=version)
    _check_shapes(model, data_config, class_names, task)
    base = Path(out)
    version = int(version) if version is not None else next_version(base)
    if version < 1:
        raise ServingError(f"The export version must be a positive integer. Received: {version}")
    target = base / str(version)
    if target.exists():
        raise ServingError(
            f"Export folder {target} already exists. Pass another --version or remove it."
        )
    base.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename, so a crash never leaves half a version
    # that TF Serving would try to load.
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        functions = serving_functions(model, data_config, class_names, task)
        for name in SIGNATURES:
            fn, spec = functions[name]
            archive.add_endpoint(name, fn, input_signature=spec)
        archive.write_out(str(staging / "model"), verbose=False)
        assets = staging / "model" / "assets"
        assets.mkdir(exist_ok=True)
        (assets / CLASS_NAMES_FILE).write_text("".join(f"{c}\n" for c in class_names))
        metadata = {
            "task": task,
            "class_names": [str(c) for c in class_names],
            "image_size": list(data_config.image_size),
            "channels": int(data_config.channels),
            "signatures": list(SIGNATURES),
            "data": data_config.model_dump(mode="json"),
        }
        (assets / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        os.replace(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported SavedModel version %d to %s", version, target)
    return ExportedModel(path=target, version=version, class_names=list(class_names), task=task)


def read_metadata(saved_model_dir: str | os.PathLike) -> dict:
    """The ``assets/kerasflow.json`` of an export (task, class names, data config)."""
    path = Path(saved_model_dir) / "assets" / METADATA_FILE
    if not path.is_file():
        raise ServingError(
            f"{saved_model_dir} is not a kerasflow export: {path} is missing. "
            "Export it with `kerasflow export`."
        )
    return json.loads(path.read_text())


def class_names_for(cfg, num_classes: int | None = None) -> list[str]:
    """Class names of a run config: ``data.class_names``, else the data source's own names."""
    if cfg.data.class_names:
        return [str(c) for c in cfg.data.class_names]
    from kerasflow import pipelines

    try:
        return [str(c) for c in pipelines.load_source(cfg.data).class_names]
    except DataError as exc:
        if num_classes is None:
            raise
        log.warning("cannot read class names from data.source (%s); using class ids", exc)
        return [str(i) for i in range(num_classes)]


def _config_for(model: str, config, overrides, uri: str | None):
    from kerasflow.tracking import registry

    return registry.config_for_model(model, config, overrides, uri)


def load_for_export(model: str, config=None, overrides=None, uri: str | None = None):
    """The Keras model behind a MODEL argument and its run config.

    Only safe loaders are used: ``.keras`` files with ``safe_mode=True`` and
    MLflow's Keras flavor (see :func:`kerasflow.tracking.registry.load_model`).
    """
    from kerasflow.tracking import registry

    cfg = _config_for(model, config, overrides, uri)
    keras_model = registry.load_model(model, uri or cfg.tracking.uri)
    return keras_model, cfg


def export(
    model,
    out: str | os.PathLike,
    version: int | None = None,
    config=None,
    overrides: list[str] | None = None,
    uri: str | None = None,
) -> ExportedModel:
    """Export MODEL as a SavedModel in the TF Serving layout ``out/<version>/``.

    Args:
        model: ``models:/NAME@alias``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/model``,
            a ``.keras`` path, or an in-memory Keras model (then ``config`` is required).
        out: the TF Serving base folder.
        version: the version subfolder (default: the next free number).
        config: the run config (path or :class:`~kerasflow.config.RunConfig`); default:
            the config logged with the model's run.
        overrides: ``["a.b=value", ...]`` on top of the config.
        uri: tracking store (default: the config's, then the usual default).

    Example:
        >>> kerasflow.export("models:/digits-cnn@champion", out="serving/digits")
    """
    if isinstance(model, str | os.PathLike):
        keras_model, cfg = load_for_export(str(model), config, overrides, uri)
    else:
        if config is None:
            raise ConfigError("Exporting an in-memory model needs its run config: pass config=.")
        keras_model = model
        cfg = _config_for("", config, overrides, uri)
    num_classes = keras_model.outputs[0].shape[-1] if keras_model.outputs else None
    if cfg.experiment.task == "detection":
        from kerasflow.serving.detection import detection_class_names

        names = detection_class_names(cfg)
    else:
        names = class_names_for(cfg, num_classes)
    return export_saved_model(
        keras_model,
        out,
        cfg.data,
        names,
        cfg.experiment.task,
        version=version,
    )


def export_after_training(cfg, model, class_names, tracker, registered, work_dir) -> Path | None:
    """The automatic export at the end of a run whose config has an ``export:`` section.

    Writes the SavedModel, logs it to the run under ``export/<version>``, logs a
    pyfunc serving model (``serving_model``) and tags the registered model
    version with both URIs. Returns the export folder, or None when export is off.
    """
    spec = cfg.export
    if spec is None or not spec.enabled:
        return None
    from kerasflow.tracking import models as tracked

    base = Path(spec.dir) if spec.dir else Path(work_dir) / "export"
    exported = export_saved_model(
        model, base, cfg.data, list(class_names), cfg.experiment.task, version=spec.version
    )
    if not tracker.enabled:
        return exported.path
    tags = {
        "kerasflow.export_uri": tracked.log_export(tracker, exported.path, exported.version),
        "kerasflow.export_dir": str(exported.path.resolve()),
    }
    if spec.log_serving_model:
        tags["kerasflow.serving_model_uri"] = tracked.log_serving_model(
            tracker, exported.path, max_payload_mb=spec.max_payload_mb
        )
    tracker.set_tags(tags)
    if registered is not None:
        tracked.tag_model_version(registered.name, registered.version, tags, tracker.uri)
    return exported.path
