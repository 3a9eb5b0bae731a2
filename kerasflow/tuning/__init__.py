"""Hyperparameter search over the run config with Keras Tuner, tracked in MLflow.

``kerasflow.tuning.tune(config)`` runs the ``tune:`` section of a run config
and returns a :class:`~kerasflow.tuning.search.TuneResult`. Keras Tuner is
imported on first use, so the config schema can import
:mod:`kerasflow.tuning.search_space` cheaply.

Modules: :mod:`~kerasflow.tuning.search_space` (what the ``space`` means),
:mod:`~kerasflow.tuning.hypermodel` (a trial's run config, data and model),
:mod:`~kerasflow.tuning.oracles` (how to search: ``tune.tuner``'s oracle),
:mod:`~kerasflow.tuning.trial` (one tracked fit per trial),
:mod:`~kerasflow.tuning.search` (the parent run, resume, the best trial's evaluation),
:mod:`~kerasflow.tuning.distributed` (chief and workers),
:mod:`~kerasflow.tuning.report` (``trials.csv`` and plots).

Distributed tuning is Keras Tuner's chief/worker mode, with every process
logging to one MLflow tracking server::

    kerasflow server --port 5000 --backend-store-uri sqlite:////srv/mlflow/mlflow.db
    # same as: mlflow server --backend-store-uri sqlite:////srv/mlflow/mlflow.db \
    #   --artifacts-destination /srv/mlflow/artifacts --host 127.0.0.1 --port 5000
    kerasflow tune search.yaml --set tracking.uri=http://HOST:5000 --chief --port 8000
    kerasflow tune search.yaml --set tracking.uri=http://HOST:5000 \
        --worker 1 --chief-address HOST:8000

The server and the chief bind to 127.0.0.1 unless ``--host`` says otherwise
(neither has authentication). Workers must use the chief's config file.
"""

from __future__ import annotations


def tune(config=None, overrides=None, **kwargs):
    """Run a hyperparameter search. See :func:`kerasflow.tuning.search.tune`."""
    from kerasflow.tuning.search import tune as _tune

    return _tune(config, overrides, **kwargs)


def __getattr__(name):
    if name == "TuneResult":
        from kerasflow.tuning.search import TuneResult

        return TuneResult
    raise AttributeError(f"module 'kerasflow.tuning' has no attribute {name!r}")


__all__ = ["TuneResult", "tune"]
