"""MLflow tracking: the default store, run logging, the Keras callback, the model registry."""

from kerasflow.tracking.store import default_tracking_uri, resolve_tracking_uri

_TRACKER_NAMES = {"MlflowCallback", "RunTracker", "flatten_params", "start_tracker"}


def __getattr__(name):
    # tracker.py imports Keras; a process that only registers or reads the store
    # (``kerasflow.tracking.model_registry``) starts without it.
    if name in _TRACKER_NAMES:
        from kerasflow.tracking import tracker

        return getattr(tracker, name)
    raise AttributeError(f"module 'kerasflow.tracking' has no attribute {name!r}")


__all__ = [
    "MlflowCallback",
    "RunTracker",
    "default_tracking_uri",
    "flatten_params",
    "resolve_tracking_uri",
    "start_tracker",
]
