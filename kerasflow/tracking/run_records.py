"""Reading runs back from MLflow for comparisons: metrics, params and tags of chosen runs.

Example:
    >>> from kerasflow.tracking.run_records import fetch_runs
    >>> runs = fetch_runs(["digits"], uri="sqlite:///mlruns/mlflow.db")  # an experiment's runs
    >>> runs[0].metrics["test_accuracy"]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kerasflow.errors import TrackingError
from kerasflow.tracking.store import resolve_tracking_uri

MAX_RUNS = 1000


@dataclass
class RunRecord:
    """One MLflow run as the comparison sees it."""

    run_id: str
    run_name: str
    experiment: str
    status: str
    start_time: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short label for tables and plots: run name and the first 8 characters of the id."""
        return f"{self.run_name} ({self.run_id[:8]})" if self.run_name else self.run_id[:8]


def _record(run, experiment_names: dict[str, str], client: MlflowClient) -> RunRecord:
    exp_id = run.info.experiment_id
    if exp_id not in experiment_names:
        experiment_names[exp_id] = client.get_experiment(exp_id).name
    return RunRecord(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        experiment=experiment_names[exp_id],
        status=run.info.status,
        start_time=run.info.start_time,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
    )


def fetch_runs(refs: list[str], uri: str | None = None) -> list[RunRecord]:
    """Runs named by id, or every run of an experiment named by name, in the order given.

    Each ref is tried as a run id first, then as an experiment name (whose
    runs come newest first). A run named twice is listed once.

    Args:
        refs: run ids and/or experiment names.
        uri: tracking store (default: see :func:`~kerasflow.tracking.store.resolve_tracking_uri`).

    Raises:
        TrackingError: a ref is neither a run id nor an experiment name in the store.
    """
    uri = resolve_tracking_uri(uri)
    client = MlflowClient(uri)
    names: dict[str, str] = {}
    out: list[RunRecord] = []
    seen: set[str] = set()
    for ref in refs:
        runs = []
        try:
            runs = [client.get_run(ref)]
        except MlflowException:
            exp = client.get_experiment_by_name(ref)
            if exp is None:
                raise TrackingError(
                    f"{ref!r} is neither a run id nor an experiment name in the store {uri}. "
                    "List runs with `kerasflow ui`."
                ) from None
            runs = client.search_runs(
                [exp.experiment_id], max_results=MAX_RUNS, order_by=["attributes.start_time DESC"]
            )
        for run in runs:
            if run.info.run_id not in seen:
                seen.add(run.info.run_id)
                out.append(_record(run, names, client))
    return out
