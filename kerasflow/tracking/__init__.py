"""MLflow tracking: the default store, run logging, the Keras callback, the model registry."""

from kerasflow.tracking.store import default_tracking_uri, resolve_tracking_uri
from kerasflow.tracking.tracker import MlflowCallback, RunTracker, flatten_params, start_tracker

__all__ = [
    "MlflowCallback",
    "RunTracker",
    "default_tracking_uri",
    "flatten_params",
    "resolve_tracking_uri",
    "start_tracker",
]
