"""Finding and closing MLflow runs by tags: what a search needs to resume and to report.

A search's parent run, its trials' child runs and orphans left ``RUNNING``
by a killed process are all found here, so MLflow calls stay in this package.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mlflow
from mlflow.tracking import MlflowClient

from kerasflow.tracking.store import resolve_tracking_uri

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"


@dataclass
class RunSummary:
    """The facts of one run that searches and reports use."""

    run_id: str
    status: str
    start_time: int
    end_time: int | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "\\'") + "'"


def find_runs(
    experiment: str,
    tags: dict[str, str],
    uri: str | None = None,
    statuses: tuple[str, ...] | None = None,
) -> list[RunSummary]:
    """Runs of ``experiment`` whose tags equal ``tags`` (oldest first); [] if no such experiment.

    Args:
        statuses: keep only these (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``).
    """
    client = MlflowClient(resolve_tracking_uri(uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = " and ".join(f"tags.`{k}` = {_quote(v)}" for k, v in tags.items())
    out: list[RunSummary] = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id], filter_string=query, max_results=1000, page_token=token
        )
        for run in page:
            if statuses and run.info.status not in statuses:
                continue
            out.append(
                RunSummary(
                    run_id=run.info.run_id,
                    status=run.info.status,
                    start_time=run.info.start_time,
                    end_time=run.info.end_time,
                    tags=dict(run.data.tags),
                    params=dict(run.data.params),
                    metrics=dict(run.data.metrics),
                )
            )
        token = page.token
        if not token:
            break
    return sorted(out, key=lambda r: r.start_time)


def child_runs(experiment: str, parent_run_id: str, uri: str | None = None) -> list[RunSummary]:
    """The nested runs of ``parent_run_id`` (oldest first)."""
    return find_runs(experiment, {PARENT_TAG: parent_run_id}, uri)


def run_status(run_id: str, uri: str | None = None) -> str:
    return MlflowClient(resolve_tracking_uri(uri)).get_run(run_id).info.status


def run_tags(run_id: str, uri: str | None = None) -> dict[str, str]:
    return dict(MlflowClient(resolve_tracking_uri(uri)).get_run(run_id).data.tags)


def registered_versions(run_id: str, name: str, uri: str | None = None) -> list[str]:
    """Versions of registered model ``name`` made from run ``run_id`` (oldest first)."""
    client = MlflowClient(resolve_tracking_uri(uri))
    found = client.search_model_versions(f"run_id = {_quote(run_id)}")
    return sorted((v.version for v in found if v.name == name), key=int)


def terminate(run_ids: list[str], status: str, uri: str | None = None) -> None:
    """Mark runs ended with ``status`` (``KILLED`` for orphans of a killed process)."""
    client = MlflowClient(resolve_tracking_uri(uri))
    for run_id in run_ids:
        client.set_terminated(run_id, status)
        log.info("marked MLflow run %s %s", run_id, status)


def download_artifact(run_id: str, path: str, dst: str, uri: str | None = None) -> str:
    """Download one artifact of any run to ``dst``; returns the local path."""
    return mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=resolve_tracking_uri(uri)
    )
