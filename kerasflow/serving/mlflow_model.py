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
    mv = _model_version(MlflowClient(resolve_tracking_uri(uri)), model)
    return None if mv is None else (mv.tags or {}).get(SERVING_MODEL_TAG)


def _model_version(client: MlflowClient, model: str):
    """The registered version behind ``models:/NAME@alias`` or ``models:/NAME/VERSION`` (or None)."""
    rest = model.removeprefix("models:/")
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return client.get_model_version_by_alias(name, alias.split("/", 1)[0])
        if "/" in rest:
            name, number = rest.split("/", 2)[:2]
            return client.get_model_version(name, number)
    except MlflowException as exc:
        raise TrackingError(
            f"Cannot find model {model!r} in the MLflow store: {exc.message}"
        ) from exc
    return None


def _logged_model_run(client: MlflowClient, model: str) -> str | None:
    """The run that logged ``models:/<model id>`` (None when there is no such model)."""
    try:
        return client.get_logged_model(
            model.removeprefix("models:/").split("/", 1)[0]
        ).source_run_id
    except MlflowException:
        return None


def recorded_digests(model: str, uri: str | None = None) -> list[tuple[str, str]]:
    """The export digests the tracking store records for an MLflow URI, as ``(where, digest)``.

    ``models:/``: the version's :data:`~kerasflow.serving.digest.DIGEST_TAG` tag and
    its run's; ``runs:/``: the run's. These tags, not files beside the model, are
    what :func:`kerasflow.serving.trust.check_digest` trusts.
    """
    from kerasflow.serving.digest import DIGEST_TAG

    client = MlflowClient(resolve_tracking_uri(uri))
    records = []
    run_id = None
    if model.startswith("models:/"):
        mv = _model_version(client, model)
        if mv is None:  # a logged model, models:/<model id>
            run_id = _logged_model_run(client, model)
        else:
            run_id = mv.run_id
            if (mv.tags or {}).get(DIGEST_TAG):
                where = f"tag {DIGEST_TAG} of model version {mv.name}/{mv.version}"
                records.append((where, mv.tags[DIGEST_TAG]))
    elif model.startswith("runs:/"):
        run_id = model.removeprefix("runs:/").split("/", 1)[0]
    if run_id:
        try:
            tags = client.get_run(run_id).data.tags
        except MlflowException as exc:
            raise TrackingError(f"Cannot find the run of {model!r}: {exc.message}") from exc
        if tags.get(DIGEST_TAG):
            records.append((f"tag {DIGEST_TAG} of run {run_id}", tags[DIGEST_TAG]))
    return records


def find_digest_record(digest: str, uri: str | None = None) -> str | None:
    """The run whose :data:`~kerasflow.serving.digest.DIGEST_TAG` tag is ``digest``, described.

    None when no run records it, or when the (local) tracking store does not
    exist: the look-up creates nothing.
    """
    from mlflow.entities import ViewType

    from kerasflow.serving.digest import DIGEST_TAG, normalise
    from kerasflow.tracking.store import existing_tracking_uri

    tracking = existing_tracking_uri(uri)
    if tracking is None:
        return None
    client = MlflowClient(tracking)
    wanted = normalise(digest)  # 'sha256:' and hex only: safe inside the filter string
    try:
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
        runs = client.search_runs(
            ids, f"tags.`{DIGEST_TAG}` = '{wanted}'", run_view_type=ViewType.ALL, max_results=1
        )
    except MlflowException as exc:
        log.warning("cannot search %s for export digest %s: %s", tracking, wanted, exc.message)
        return None
    return f"tag {DIGEST_TAG} of run {runs[0].info.run_id}" if runs else None


def verify_export(
    saved_model_dir,
    model: str,
    uri: str | None = None,
    digest: str | None = None,
    trust: bool = False,
) -> str | None:
    """Check a SavedModel's content digest against the trusted records for MODEL.

    The records: ``digest`` (what the user passed), then for ``runs:/`` and
    ``models:/`` the run and version tags, and for a local folder any run of the
    tracking store that recorded this digest. Graph ops are checked separately
    (:func:`kerasflow.serving.trust.check_saved_model_graph`).

    Returns:
        None, or the warning to show when ``trust`` lets an unknown SavedModel through.

    Raises:
        ServingError: no record matches and ``trust`` is off.
    """
    from kerasflow.serving.digest import content_digest, normalise
    from kerasflow.serving.trust import check_digest

    actual = content_digest(saved_model_dir)
    records = [("--saved-model-digest", normalise(digest))] if digest else []
    searched = ""
    if model.startswith(("models:/", "runs:/")):
        records += recorded_digests(model, uri)
        searched = f"no run or model-version tag of {model} records a digest"
    elif not records:
        found = find_digest_record(actual, uri)
        records += [(found, actual)] if found else []
        searched = "no run of the tracking store records it"
    return check_digest(saved_model_dir, actual, records, trust, searched)


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
    digest: str | None = None,
    trust_saved_model: bool = False,
):
    """Load a kerasflow serving model (local folder or MLflow URI) as a ``Predictor``.

    MLflow URIs are downloaded (to ``dst`` or a temporary folder). The folder is
    accepted only when it is exactly what kerasflow writes, its SavedModel's
    content digest is recorded (:func:`verify_export`: the run or version tags,
    or ``digest``) and its graph holds no file-system or process ops; then the
    SavedModel is loaded as data, and no Python from the folder is imported
    (MLflow's pyfunc loader is not used). ``max_payload_mb`` overrides the limit
    saved with the model (None keeps it).

    Args:
        digest: the export's digest as ``kerasflow export`` printed it (for a local folder
            whose run the tracking store does not hold).
        trust_saved_model: load it even when its digest is unknown (with a warning);
            forbidden graph ops are refused anyway.

    Returns:
        A :class:`kerasflow.serving.predictor.Predictor`: ``predict({"b64": [...]})``.
    """
    import tempfile

    from kerasflow.serving.predictor import DEFAULT_MAX_PAYLOAD_MB, Limits, Predictor
    from kerasflow.serving.trust import check_saved_model_graph, check_serving_folder

    model = str(model)
    folder = model
    if model.startswith(("models:/", "runs:/")):
        dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="kerasflow-model-"))
        folder = download(model, dst, uri)
    saved_model, config = check_serving_folder(folder)
    check_saved_model_graph(saved_model)
    verify_export(saved_model, model, uri, digest, trust_saved_model)
    if max_payload_mb is None:
        max_payload_mb = float(config.get("max_payload_mb", DEFAULT_MAX_PAYLOAD_MB))
    return Predictor.from_export(saved_model, Limits(max_payload_bytes=int(max_payload_mb * 1e6)))
