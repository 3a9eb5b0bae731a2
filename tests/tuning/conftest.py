"""A private MLflow store and tuning root per test module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tune_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tune")


@pytest.fixture(scope="module")
def tune_uri(tune_root):
    return f"sqlite:///{tune_root / 'mlruns' / 'mlflow.db'}"
