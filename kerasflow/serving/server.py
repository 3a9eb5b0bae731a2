"""``kerasflow serve``: a kerasflow export over HTTP, loaded as data.

MODEL may be ``models:/NAME@alias`` or ``models:/NAME/VERSION`` (the serving
model attached to that version is used when there is one),
``runs:/RUN_ID/model``, ``runs:/RUN_ID/export/N`` (an export folder logged
to the run), a ``.keras`` file, a SavedModel export folder (or its
TF Serving base folder: the highest version), or a saved serving model folder
(with an ``MLmodel`` file). A Keras model is exported first, into a
temporary folder. A LiteRT (``.tflite``) or ONNX (``.onnx``) artefact with its
contract is served by its own runtime, without TensorFlow
(:mod:`kerasflow.serving.artefact_predictor`).

Nothing from a model folder is imported: a serving model folder is accepted
only when it is exactly what kerasflow writes
(:func:`kerasflow.serving.trust.check_serving_folder`), and the server then
builds its model from the SavedModel and its contract alone
(:class:`~kerasflow.serving.predictor.Predictor`). A SavedModel is served
only when its content digest is recorded: in the tracking store (the run's
and model version's tags, for ``runs:/``, ``models:/`` and local exports of
tracked runs) or passed as ``saved_model_digest``; ``trust_saved_model``
serves an unknown one with a warning (:mod:`kerasflow.serving.digest`). A
SavedModel whose graph holds file-system or process ops is refused whatever
the flags (:func:`kerasflow.serving.trust.check_saved_model_graph`).

The app (:class:`~kerasflow.serving.http_app.ServingApp`) answers
``/invocations``, ``/ping``, ``/health`` and ``/version``; every bad request
gets a 4xx with a short message. It binds to 127.0.0.1 unless told otherwise.

Example:
    >>> from kerasflow.serving.server import serve
    >>> serve("models:/digits-cnn@champion", port=5001)  # blocks
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kerasflow.errors import ServingError
from kerasflow.serving.predictor import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_PAYLOAD_MB,
    Limits,
)
from kerasflow.tracking.children import Terminated, terminate_as_exception

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001


@dataclass
class ServingSource:
    """The SavedModel folder to serve, the settings saved with it (``max_payload_mb``), and how
    it was trusted."""

    saved_model_dir: Path
    config: dict = field(default_factory=dict)
    own_export: bool = False  # exported by this process from a Keras model: its digest is known
    warning: str | None = None  # set when --trust-saved-model let an unknown SavedModel through


def _saved_model_dir(path: Path) -> Path | None:
    if (path / "saved_model.pb").is_file():
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def _flavors(model_uri: str, workdir: Path, uri: str | None) -> set[str] | None:
    """The flavors an MLflow URI's MLmodel names; None when it has no MLmodel (an export folder)."""
    import yaml

    from kerasflow.serving import mlflow_model as tracked

    try:
        mlmodel = tracked.download(f"{model_uri.rstrip('/')}/MLmodel", workdir / "mlmodel", uri)
    except ServingError:
        return None
    try:
        spec = yaml.safe_load(Path(mlmodel).read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ServingError(f"The MLmodel file of {model_uri} is not valid YAML ({exc}).") from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    return set(flavors) if isinstance(flavors, dict) else set()


def _local_source(path: Path) -> ServingSource:
    """A local serving-model folder (checked) or SavedModel export folder (or its base folder)."""
    from kerasflow.serving import trust

    if (path / "MLmodel").is_file():
        saved, saved_config = trust.check_serving_folder(path)
        return ServingSource(saved, saved_config)
    saved = _saved_model_dir(path)
    if saved is None:
        raise ServingError(
            f"{path} is neither a SavedModel export (saved_model.pb) nor an MLflow model "
            "(MLmodel). Pass a folder written by `kerasflow export` or an MLflow model."
        )
    return ServingSource(saved)


def resolve_saved_model(
    model: str,
    workdir: Path,
    config=None,
    overrides: list[str] | None = None,
    uri: str | None = None,
    trust_saved_model: bool = False,
    digest: str | None = None,
) -> ServingSource:
    """The SavedModel to serve for MODEL, checked; exports a Keras model into ``workdir``.

    A SavedModel that kerasflow did not export here is served only when its
    content digest is recorded (:func:`kerasflow.serving.mlflow_model.verify_export`)
    or ``trust_saved_model`` is set; its graph ops are checked either way.

    Raises:
        ServingError: a folder that is not kerasflow's, an unknown or altered SavedModel,
            or a graph with forbidden ops.
    """
    from kerasflow.serving import mlflow_model as tracked
    from kerasflow.serving import trust
    from kerasflow.serving.export import export

    path = Path(model)
    is_uri = model.startswith(("models:/", "runs:/"))
    if not is_uri and path.is_dir():
        source = _local_source(path)
    else:
        logged = None
        if config is None and not overrides and is_uri:
            logged = tracked.serving_model_uri(model, uri)
            if logged is None:
                flavors = _flavors(
                    model, workdir, uri
                )  # None: an export folder (runs:/ID/export/1)
                if flavors is None or "keras" not in flavors:
                    logged = model
        if logged:
            log.info("serving %s through the serving model %s", model, logged)
            source = _local_source(Path(tracked.download(logged, workdir / "downloaded", uri)))
        else:
            exported = export(
                model, workdir / "export", config=config, overrides=overrides, uri=uri
            )
            source = ServingSource(exported.path, own_export=True)
    trust.check_saved_model_graph(source.saved_model_dir)  # whatever the flags say
    if not source.own_export:
        source.warning = tracked.verify_export(
            source.saved_model_dir, model, uri, digest, trust_saved_model
        )
    return source


def limits_for(
    source: ServingSource,
    max_payload_mb: float | None = None,
    max_image_pixels: int | None = None,
    max_batch: int | None = None,
) -> Limits:
    """Request limits: the arguments, else what is saved with the model, else the defaults."""
    payload = max_payload_mb
    if payload is None:
        payload = float(source.config.get("max_payload_mb", DEFAULT_MAX_PAYLOAD_MB))
    return Limits(
        max_payload_bytes=int(payload * 1e6),
        max_image_pixels=int(max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS),
        max_batch=int(max_batch or DEFAULT_MAX_BATCH),
    )


def build_app(source: ServingSource, limits: Limits):
    """The ASGI app serving ``source`` within ``limits``."""
    from kerasflow.serving.http_app import ServingApp
    from kerasflow.serving.predictor import Predictor
    from kerasflow.version import __version__

    return ServingApp(Predictor.from_export(source.saved_model_dir, limits), version=__version__)


def serve(
    model: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_payload_mb: float | None = None,
    config=None,
    overrides: list[str] | None = None,
    uri: str | None = None,
    on_ready=None,
    max_image_pixels: int | None = None,
    max_batch: int | None = None,
    trust_saved_model: bool = False,
    saved_model_digest: str | None = None,
    memory_pool: bool = False,
) -> None:
    """Serve MODEL over HTTP until interrupted (blocks).

    Args:
        model: see the module docstring.
        host: bind address; 127.0.0.1 keeps it on this machine.
        port: TCP port.
        max_payload_mb: larger request bodies get HTTP 413 (default: the limit saved
            with the model, the run's ``export.max_payload_mb``, else 16).
        config: the run config for a ``.keras`` file (default: the model's run's config).
        on_ready: called with the app's URL once the model is loaded, before serving.
        max_image_pixels: pixels an image may declare, and a request's images together
            (default 40 megapixels); more gets HTTP 413 before anything is decoded.
        max_batch: images one request may hold (default 256); more gets HTTP 413.
        trust_saved_model: serve a SavedModel whose content digest no trusted record holds
            (logged as a warning: a SavedModel graph is code); forbidden ops are refused anyway.
        saved_model_digest: the digest ``kerasflow export`` printed, for a local export
            folder that the tracking store does not record.
        memory_pool: keep TensorFlow's oneDNN memory pool (faster for large batches of
            large models; the process keeps the peak memory of any request). By default
            memory goes back to the system after each request
            (:mod:`kerasflow.serving.allocator`).

    Raises:
        ServingError: the model is refused (see the module docstring) or a limit is not positive.
    """
    import uvicorn

    from kerasflow.serving.allocator import release_memory_after_requests

    release_memory_after_requests(memory_pool)  # before TensorFlow allocates (see the module)
    for name, value in (
        ("max_payload_mb", max_payload_mb),
        ("max_image_pixels", max_image_pixels),
        ("max_batch", max_batch),
    ):
        if value is not None and value <= 0:
            raise ServingError(f"{name} must be positive. Received: {value}")
    # SIGTERM (docker stop, Kubernetes) unwinds like Ctrl-C, so the temporary folder goes
    # too: also when it arrives while the model loads, and after uvicorn's own shutdown,
    # which re-raises the signal it caught.
    with contextlib.suppress(KeyboardInterrupt, Terminated), terminate_as_exception():
        workdir = Path(tempfile.mkdtemp(prefix="kerasflow-serve-"))
        try:
            from kerasflow.serving.artefact_runtime import is_artefact

            if is_artefact(model):  # LiteRT / ONNX: served by its own runtime, no TensorFlow
                from kerasflow.serving.artefact_predictor import build_artefact_app

                limits = limits_for(
                    ServingSource(Path(model)), max_payload_mb, max_image_pixels, max_batch
                )
                app = build_artefact_app(model, limits)
            else:
                source = resolve_saved_model(
                    model, workdir, config, overrides, uri, trust_saved_model, saved_model_digest
                )
                limits = limits_for(source, max_payload_mb, max_image_pixels, max_batch)
                app = build_app(source, limits)
            if on_ready is not None:
                on_ready(f"http://{host}:{port}")
            uvicorn.run(
                app, host=host, port=int(port), log_level="warning", workers=1, lifespan="off"
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
