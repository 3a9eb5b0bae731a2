"""Exception types raised by kerasflow.

Every error a user can fix derives from :class:`KerasflowError`; the CLI turns
those into one clear message and exit code 2. Anything else is a bug or an
environment problem and exits 1.
"""

from __future__ import annotations


class KerasflowError(Exception):
    """Base class for errors caused by the user's input (config, data, model)."""

    exit_code = 2


class ConfigError(KerasflowError):
    """The run config is missing, malformed, or has an invalid value."""


class DataError(KerasflowError):
    """A data source, file or label is unreadable or inconsistent."""


class ModelError(KerasflowError):
    """A model name, parameter or model file is invalid or unsafe to load."""


class TrackingError(KerasflowError):
    """The MLflow store, run or registered model cannot be used as asked."""


class ServingError(KerasflowError):
    """An export or serving request cannot be carried out."""


class VerificationError(ServingError):
    """An exported artefact scored worse than allowed next to its Keras model (exit 1)."""

    exit_code = 1


class WorkerLostError(KerasflowError):
    """A worker of a multi-worker job stopped answering; restart every worker to resume."""

    exit_code = 1


class BusyError(KerasflowError):
    """Another live process holds what this one needs (a run's work folder); nothing was changed."""


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (``docker stop``, Kubernetes, Slurm); handled exactly like Ctrl-C."""
