"""kerasflow: one YAML config to a tracked, tuned and served Keras image model."""

from kerasflow.config import RunConfig, load_config
from kerasflow.errors import KerasflowError
from kerasflow.version import __version__


def train(config, **kwargs):
    """Train, evaluate, track and register a model from a run config. See ``kerasflow.training.fit.train``."""
    from kerasflow.training.fit import train as _train

    return _train(config, **kwargs)


def export(model, out, **kwargs):
    """Export a model as a SavedModel in the TF Serving layout. See ``kerasflow.serving.export.export``."""
    from kerasflow.serving.export import export as _export

    return _export(model, out, **kwargs)


def tune(config, **kwargs):
    """Run the config's hyperparameter search (``tune:``). See ``kerasflow.tuning.search.tune``."""
    from kerasflow.tuning.search import tune as _tune

    return _tune(config, **kwargs)


def __getattr__(name):
    # Subpackages that import TensorFlow load on first use, so `kerasflow --help` stays fast.
    import importlib

    if name in {"pipelines", "models", "tasks", "training", "tracking", "tuning", "serving"}:
        return importlib.import_module(f"kerasflow.{name}")
    raise AttributeError(f"module 'kerasflow' has no attribute {name!r}")


__all__ = ["KerasflowError", "RunConfig", "export", "load_config", "train", "tune", "__version__"]
