"""What a registered model version says about itself: a description and tags the UI can filter on.

The description holds the test metrics, the data digest and links to the run's
config and contract; the tags (``task``, ``model_name``, ``data_digest``,
``data_source``, ``champion_metric`` and its value) let the registry page and
``MlflowClient.search_model_versions("tags.task = 'classification'")`` filter versions.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from kerasflow.tracking.datasets import DIGEST_TAG
from kerasflow.tracking.store import resolve_tracking_uri


def version_description(
    *, run_id: str, task: str, model: str, source: str, digest: str, metrics: dict[str, float]
) -> str:
    """The Markdown description of a registered version."""
    lines = [
        f"**{task}** model `{model}`, trained by run `{run_id}` on `{source}` "
        f"(data digest `{digest}`).",
        "",
        "| test metric | value |",
        "|---|---|",
        *(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())),
        "",
        f"Config: `runs:/{run_id}/config.yaml`; contract: `runs:/{run_id}/contract.json`.",
    ]
    return "\n".join(lines)


def annotate_version(
    name: str,
    version: str,
    *,
    run_id: str,
    task: str,
    model: str,
    source: str,
    metrics: dict[str, float],
    champion_metric: str,
    uri: str | None = None,
) -> dict[str, str]:
    """Set the description and filterable tags of a registered version; returns the tags."""
    client = MlflowClient(resolve_tracking_uri(uri))
    digest = client.get_run(run_id).data.tags.get(DIGEST_TAG, "unknown")
    client.update_model_version(
        name,
        version,
        description=version_description(
            run_id=run_id, task=task, model=model, source=source, digest=digest, metrics=metrics
        ),
    )
    tags = {
        "task": task,
        "model_name": model,
        "data_source": source[:250],
        "data_digest": digest,
        "champion_metric": champion_metric,
    }
    if champion_metric in metrics:
        tags[champion_metric] = f"{metrics[champion_metric]:.4f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return tags
