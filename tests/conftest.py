"""Shared fixtures: a private MLflow store per session and one trained digits model."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory):
    """A private kerasflow/MLflow area: ``uri`` for tracking, ``work`` for run state."""
    root = tmp_path_factory.mktemp("store")
    return root


@pytest.fixture(scope="session")
def tracking_uri(store_dir):
    return f"sqlite:///{store_dir / 'mlruns' / 'mlflow.db'}"


def overrides_for(store, tracking_uri, name="t", *extra):
    """Overrides that keep a run's files inside the test's store."""
    return [
        f"experiment.name={name}",
        f"experiment.work_dir={store / 'runs'}",
        f"tracking.uri={tracking_uri}",
        *extra,
    ]


@pytest.fixture(scope="session")
def digits_result(store_dir, tracking_uri):
    """The packaged default config trained once (the demo's run), shared by many tests."""
    import kerasflow

    cfg = kerasflow.load_config(
        None, overrides_for(store_dir, tracking_uri, "digits", "train.verbose=0")
    )
    return kerasflow.train(cfg)
