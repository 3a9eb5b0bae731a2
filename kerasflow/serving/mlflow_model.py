"""MLflow calls of the serving side: the pyfunc serving model, export artifacts, version tags.

The serving model is an MLflow pyfunc *model from code*: MLflow stores
``kerasflow/serving/pyfunc_code.py`` (a few lines naming
:class:`kerasflow.serving.pyfunc.ServingModel`) and the SavedModel folder as
its artifact, so loading it unpickles nothing.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import version as _version
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kerasflow.errors import ServingError, TrackingError
from kerasflow.tracking.store import resolve_tracking_uri

log = logging.getLogger(__name__)

SERVING_MODEL_NAME = "serving_model"
SERVING_MODEL_TAG = "kerasflow.serving_model_uri"


def _code_path() -> str:
    from kerasflow.serving import pyfunc_code

    return str(Path(pyfunc_code.__file__).resolve())


def _requirements() -> list[str]:
    from kerasflow.version import __version__

    return [
        f"mlflow=={_version('mlflow')}",
        f"tensorflow=={_version('tensorflow')}",
        f"kerasflow=={__version__}",
    ]


def _serving_kwargs(saved_model_dir, max_payload_mb: float) -> dict:
    from kerasflow.serving.pyfunc import SAVED_MODEL_ARTIFACT

    return dict(
        python_model=_code_path(),
        artifacts={SAVED_MODEL_ARTIFACT: str(Path(saved_model_dir).resolve())},
        model_config={"max_payload_mb": float(max_payload_mb)},
        pip_requirements=_requirements(),
    )


def save_serving_model(saved_model_dir, path, max_payload_mb: float = 16.0) -> Path:
    """Save a pyfunc serving model for an exported SavedModel to the local folder ``path``."""
    mlflow.pyfunc.save_model(str(path), **_serving_kwargs(saved_model_dir, max_payload_mb))
    return Path(path)


def log_serving_model(tracker, saved_model_dir, max_payload_mb: float = 16.0) -> str:
    """Log a pyfunc serving model into the tracker's (active) run; returns its model URI."""
    active = mlflow.active_run()
    if active is None or active.info.run_id != tracker.run_id:
        raise TrackingError(
            f"Run {tracker.run_id} is not the active MLflow run; cannot log the serving model."
        )
    info = mlflow.pyfunc.log_model(
        name=SERVING_MODEL_NAME, **_serving_kwargs(saved_model_dir, max_payload_mb)
    )
    return info.model_uri


def log_export(tracker, saved_model_dir, version: int) -> str:
    """Log an export folder to the run under ``export/<version>``; returns its artifact URI."""
    path = f"export/{version}"
    tracker.client.log_artifacts(tracker.run_id, str(saved_model_dir), path)
    return f"runs:/{tracker.run_id}/{path}"


def tag_model_version(
    name: str, version: str, tags: dict[str, str], uri: str | None = None
) -> None:
    """Set tags on a registered model version (e.g. where its export and serving model are)."""
    client = MlflowClient(resolve_tracking_uri(uri))
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def serving_model_uri(model: str, uri: str | None = None) -> str | None:
    """The serving model logged for ``models:/NAME@alias`` or ``models:/NAME/VERSION``, if any."""
    if not model.startswith("models:/"):
        return None
    client = MlflowClient(resolve_tracking_uri(uri))
    rest = model.removeprefix("models:/")
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        elif "/" in rest:
            name, number = rest.split("/", 1)
            mv = client.get_model_version(name, number)
        else:
            return None
    except MlflowException as exc:
        raise TrackingError(
            f"Cannot find model {model!r} in the MLflow store: {exc.message}"
        ) from exc
    return (mv.tags or {}).get(SERVING_MODEL_TAG)


def download(artifact_uri: str, dst: str | os.PathLike, uri: str | None = None) -> str:
    """Download an MLflow artifact URI (``runs:/``, ``models:/``) into ``dst``; returns its path.

    Only files are fetched: nothing of them is imported or run.
    """
    mlflow.set_tracking_uri(resolve_tracking_uri(uri))
    Path(dst).mkdir(parents=True, exist_ok=True)
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(dst))
    except MlflowException as exc:
        raise ServingError(f"Cannot download {artifact_uri!r}: {exc.message}") from exc


def check_serving_model(path: str | os.PathLike) -> Path:
    """Refuse a local MLflow model unless it is exactly a kerasflow serving model.

    See :func:`kerasflow.serving.trust.check_serving_folder`; returns its SavedModel folder.
    """
    from kerasflow.serving.trust import check_serving_folder

    return check_serving_folder(path)[0]


def load_serving_model(
    model: str | os.PathLike,
    max_payload_mb: float | None = None,
    uri: str | None = None,
    dst: str | os.PathLike | None = None,
):
    """Load a kerasflow serving model (local folder or MLflow URI) as a ``Predictor``.

    MLflow URIs are downloaded (to ``dst`` or a temporary folder). The folder is
    accepted only when it is exactly what kerasflow writes and its graph holds no
    file-system or process ops; then the SavedModel is loaded as data, and no
    Python from the folder is imported (MLflow's pyfunc loader is not used).
    ``max_payload_mb`` overrides the limit saved with the model (None keeps it).

    Returns:
        A :class:`kerasflow.serving.predictor.Predictor`: ``predict({"b64": [...]})``.
    """
    import tempfile

    from kerasflow.serving.predictor import DEFAULT_MAX_PAYLOAD_MB, Limits, Predictor
    from kerasflow.serving.trust import check_saved_model_graph, check_serving_folder

    model = str(model)
    if model.startswith(("models:/", "runs:/")):
        dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="kerasflow-model-"))
        model = download(model, dst, uri)
    saved_model, config = check_serving_folder(model)
    check_saved_model_graph(saved_model)
    if max_payload_mb is None:
        max_payload_mb = float(config.get("max_payload_mb", DEFAULT_MAX_PAYLOAD_MB))
    return Predictor.from_export(saved_model, Limits(max_payload_bytes=int(max_payload_mb * 1e6)))
