"""Hyperparameter search over the run config with Keras Tuner, tracked in MLflow.

``kerasflow.tuning.tune(config)`` runs the ``tune:`` section of a run config
and returns a :class:`~kerasflow.tuning.tuner.TuneResult`. Keras Tuner is
imported on first use, so the config schema can import
:mod:`kerasflow.tuning.search_space` cheaply.
"""

from __future__ import annotations


def tune(config=None, overrides=None, **kwargs):
    """Run a hyperparameter search. See :func:`kerasflow.tuning.tuner.tune`."""
    from kerasflow.tuning.tuner import tune as _tune

    return _tune(config, overrides, **kwargs)


def __getattr__(name):
    if name == "TuneResult":
        from kerasflow.tuning.tuner import TuneResult

        return TuneResult
    raise AttributeError(f"module 'kerasflow.tuning' has no attribute {name!r}")


__all__ = ["TuneResult", "tune"]
