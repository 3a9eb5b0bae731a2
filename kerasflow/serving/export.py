"""Export a trained model as a TensorFlow SavedModel in the TF Serving layout.

``export(MODEL, out=DIR)`` writes ``DIR/<version>/saved_model.pb`` with three
signatures (built by the model's task, see :mod:`kerasflow.tasks`): ``serving_default``
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

from kerasflow import tasks
from kerasflow.errors import ConfigError, DataError, ServingError
from kerasflow.serving.digest import DIGEST_TAG, write_digest
from kerasflow.tasks.base import SIGNATURES

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
    digest: str = ""  # sha256 of the export's files (kerasflow.serving.digest)


def next_version(base_dir: str | os.PathLike) -> int:
    """One more than the highest numeric version folder under ``base_dir`` (1 when none)."""
    base = Path(base_dir)
    numbers = (
        [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
        if base.is_dir()
        else []
    )
    return max(numbers, default=0) + 1


def _check_shapes(model, data_config, class_names: list[str], task) -> None:
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    want = (*(int(v) for v in data_config.image_size), int(data_config.channels))
    if shape is not None and tuple(int(v) if v is not None else v for v in shape) != want:
        raise ServingError(
            f"The model's input shape {shape} does not match data.image_size and data.channels "
            f"{want} of the run config. Export with the config the model was trained with."
        )
    classes = task.num_classes(model) if getattr(model, "outputs", None) else None
    if classes is not None and classes != len(class_names):
        raise ServingError(
            f"The model predicts {classes} classes but the config names {len(class_names)}: "
            f"{class_names[:10]}. Set data.class_names to the model's classes."
        )


def export_saved_model(
    model,
    out: str | os.PathLike,
    data_config,
    contract: dict,
    version: int | None = None,
) -> ExportedModel:
    """Write ``model`` with its task's serving signatures to ``out/<version>/``.

    Args:
        model: an in-memory Keras model.
        out: the TF Serving base folder; each version is a numbered subfolder.
        data_config: the :class:`~kerasflow.config.DataConfig` it was trained with.
        contract: the model's contract (``task``, ``class_names`` and what its
            task adds, e.g. multi-label thresholds), from
            :meth:`kerasflow.tasks.base.Task.contract`.
        version: the version folder (default: the next free number).

    Raises:
        ServingError: the version folder exists, or the model does not fit the config.
    """
    import keras

    task = tasks.get(contract["task"])
    class_names = [str(c) for c in contract["class_names"]]
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
        functions = task.serving_functions(model, data_config, contract)
        for name in SIGNATURES:
            fn, spec = functions[name]
            archive.add_endpoint(name, fn, input_signature=spec)
        archive.write_out(str(staging / "model"), verbose=False)
        assets = staging / "model" / "assets"
        assets.mkdir(exist_ok=True)
        (assets / CLASS_NAMES_FILE).write_text("".join(f"{c}\n" for c in class_names))
        metadata = {
            **{k: v for k, v in contract.items() if k not in ("task", "class_names")},
            "task": task.name,
            "class_names": class_names,
            "image_size": list(data_config.image_size),
            "channels": int(data_config.channels),
            "signatures": list(SIGNATURES),
            **task.serving_metadata(contract),
            "data": data_config.model_dump(mode="json"),
        }
        (assets / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        digest = write_digest(staging / "model")
        os.replace(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s SavedModel version %d to %s (%s)", task.name, version, target, digest)
    return ExportedModel(
        path=target, version=version, class_names=class_names, task=task.name, digest=digest
    )


def read_metadata(saved_model_dir: str | os.PathLike) -> dict:
    """The ``assets/kerasflow.json`` of an export (task, class names, data config)."""
    path = Path(saved_model_dir) / "assets" / METADATA_FILE
    if not path.is_file():
        raise ServingError(
            f"{saved_model_dir} is not a kerasflow export: {path} is missing. "
            "Export it with `kerasflow export`."
        )
    return json.loads(path.read_text())


def contract_for(cfg, model) -> dict:
    """The contract of ``model`` trained with run config ``cfg`` (class names and task extras).

    A model logged to MLflow carries its contract (``contract.json`` in its run,
    see :func:`kerasflow.tracking.model_registry.load_contract`): a ``models:/`` or
    ``runs:/`` URI, or a Keras model loaded from one, uses it and the data is
    never read. Only a bare ``.keras`` file or an in-memory model has the task
    derive it from the config's data (e.g. multi-label thresholds on the
    validation split); without readable data, class ids stand in.
    """
    from kerasflow.tracking import model_registry as registry

    stored = registry.load_contract(model, cfg.tracking.uri)
    if stored is not None:
        names = cfg.data.class_names
        if names is not None and [str(c) for c in names] != stored["class_names"]:
            log.warning(
                "data.class_names %s differs from the class names stored with the model %s; "
                "using the stored ones",
                list(names)[:10],
                stored["class_names"][:10],
            )
        return stored
    if isinstance(model, str):
        model = registry.load_model(model, cfg.tracking.uri)
    task = tasks.get(cfg.experiment.task)
    try:
        data = task.training_data(task.prepare(cfg.data, cfg.experiment.seed), model)
    except DataError as exc:
        names = [str(c) for c in cfg.data.class_names or range(task.num_classes(model))]
        log.warning("cannot read data.source (%s); exporting class names %s", exc, names[:10])
        return {"task": task.name, "class_names": names}
    return task.contract(model, data)


def _config_for(model: str, config, overrides, uri: str | None):
    from kerasflow.tracking import model_registry as registry

    return registry.config_for_model(model, config, overrides, uri)


def load_for_export(model: str, config=None, overrides=None, uri: str | None = None):
    """The Keras model behind a MODEL argument and its run config.

    Only safe loaders are used: ``.keras`` files with ``safe_mode=True`` and
    MLflow's Keras flavor (see :func:`kerasflow.tracking.model_registry.load_model`).
    """
    from kerasflow.tracking import model_registry as registry

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
    return export_saved_model(keras_model, out, cfg.data, contract_for(cfg, keras_model), version)


def export_after_training(cfg, model, contract, tracker, registered, work_dir) -> Path | None:
    """The automatic export at the end of a run whose config has an ``export:`` section.

    Writes the SavedModel, logs it to the run under ``export/<version>``, logs a
    pyfunc serving model (``serving_model``) and tags the run and the registered
    model version with both URIs and the export's content digest (what
    ``kerasflow serve`` checks, :mod:`kerasflow.serving.digest`). Returns the
    export folder, or None when export is off.
    """
    spec = cfg.export
    if spec is None or not spec.enabled:
        return None
    from kerasflow.serving import mlflow_model as tracked

    base = Path(spec.dir) if spec.dir else Path(work_dir) / "export"
    if "saved_model" not in spec.formats:  # only LiteRT/ONNX: serving.formats.export_after_run
        return None
    exported = export_saved_model(model, base, cfg.data, contract, version=spec.version)
    if not tracker.enabled:
        return exported.path
    tags = {
        "kerasflow.export_uri": tracked.log_export(tracker, exported.path, exported.version),
        "kerasflow.export_dir": str(exported.path.resolve()),
        DIGEST_TAG: exported.digest,
    }
    if spec.log_serving_model:
        tags["kerasflow.serving_model_uri"] = tracked.log_serving_model(
            tracker, exported.path, max_payload_mb=spec.max_payload_mb
        )
    tracker.set_tags(tags)
    if registered is not None:
        tracked.tag_model_version(registered.name, registered.version, tags, tracker.uri)
    return exported.path
