"""Chief and workers: one search shared by processes on several hosts.

One chief (``chief=True``) serves the oracle over gRPC and workers
(``worker="1"``, ``chief_address="host:port"``) run trials, all logging to one
MLflow tracking server. The chief evaluates and registers.

Keras Tuner reads a process's role from ``KERASTUNER_*`` environment variables
and keeps its chief/worker machinery private. Every use of that private API in
kerasflow lives in this module; the rest of :mod:`kerasflow.tuning` uses only
public ``keras_tuner`` names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras_tuner

from kerasflow.errors import ConfigError, TrackingError
from kerasflow.tracking import runs as mlflow_runs

log = logging.getLogger(__name__)

_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


@dataclass
class Role:
    """What this process is in a search: ``single``, the ``chief`` or a ``worker``."""

    kind: str = "single"  # single | chief | worker
    tuner_id: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None

    @property
    def distributed(self) -> bool:
        return self.kind != "single"


def resolve_role(chief: bool, port, host: str, worker, chief_address) -> Role:
    """The role that :func:`~kerasflow.tuning.search.tune`'s arguments ask for, checked."""
    if chief and worker is not None:
        raise ConfigError("Choose --chief or --worker ID, not both.")
    if chief:
        if not port:
            raise ConfigError("--chief needs --port P (the oracle's gRPC port).")
        return Role("chief", "chief", host, int(port))
    if worker is not None:
        worker = str(worker)
        if not worker or "chief" in worker:
            raise ConfigError(
                f"--worker needs an ID without the word 'chief'. Received: {worker!r}"
            )
        if not chief_address or ":" not in chief_address:
            raise ConfigError(
                f"--worker needs --chief-address HOST:PORT. Received: {chief_address!r}"
            )
        chief_host, chief_port = chief_address.rsplit(":", 1)
        if not chief_port.isdigit():
            raise ConfigError(f"--chief-address port must be a number. Received: {chief_address!r}")
        return Role("worker", f"worker{worker}", chief_host, int(chief_port))
    if chief_address:
        raise ConfigError("--chief-address is for workers: add --worker ID.")
    return Role()


@contextlib.contextmanager
def keras_tuner_env(role: Role) -> Iterator[None]:
    """Keras Tuner reads its chief/worker settings from the environment; set them for the search."""
    saved = {k: os.environ.get(k) for k in _ENV}
    try:
        if role.distributed:
            os.environ["KERASTUNER_TUNER_ID"] = role.tuner_id
            os.environ["KERASTUNER_ORACLE_IP"] = role.host
            os.environ["KERASTUNER_ORACLE_PORT"] = str(role.port)
        else:
            for key in _ENV:
                os.environ.pop(key, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def serve_oracle(oracle: keras_tuner.Oracle, role: Role, poll: float = 0.5) -> None:
    """Serve ``oracle`` to workers over gRPC until every trial has ended and every worker left."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{role.host}:{role.port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"The chief cannot listen on {address}. Choose a free --port.")
    server.start()
    log.info("chief: serving the oracle on %s", address)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2)


class ChiefWorkerTuner(keras_tuner.Tuner):
    """Keras Tuner's ``Tuner`` in its role; the only class that touches the Tuner's private hooks."""

    def __init__(self, oracle, hypermodel, role: Role, **kwargs):
        self.role = role
        super().__init__(oracle, hypermodel, **kwargs)

    @property
    def is_worker(self) -> bool:
        """Whether this tuner runs trials for a chief's oracle (reached over gRPC)."""
        return self._is_worker()

    def _populate_initial_space(self):
        # The whole space, conditional parameters included, is declared up front,
        # so the default loop that builds models to discover conditions is not needed.
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def on_search_begin(self):
        # Saved before the first trial so that a kill in trial 0 still resumes.
        if not self.is_worker:
            self.save()

    def search(self, *args, **kwargs):
        if self.role.kind == "chief":
            # Keras Tuner's own chief loop polls for the end every 20 s; this one every 0.5 s.
            self.save()
            serve_oracle(self.oracle, self.role)
            return
        super().search(*args, **kwargs)


def wait_for_parent(
    experiment: str, key: str, fingerprint: str, uri: str | None, timeout: float = 600.0
) -> str:
    """A worker finds the chief's parent run in the tracking store (by the search's tags)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = mlflow_runs.find_runs(
            experiment,
            {"kerasflow.role": "search", "kerasflow.search": key},
            uri,
            statuses=("RUNNING",),
        )
        if runs:
            parent = runs[-1]
            theirs = parent.tags.get("kerasflow.search_fingerprint")
            if theirs != fingerprint:
                raise ConfigError(
                    f"The chief's search {key!r} (run {parent.run_id}) was started from "
                    "another config or space than this worker's. Start workers with the chief's "
                    "config file."
                )
            return parent.run_id
        if time.monotonic() > deadline:
            raise TrackingError(
                f"No running search {key!r} in experiment {experiment!r} at "
                f"{uri or 'the default store'} after {timeout:.0f}s. Start the chief "
                "first, with the same tracking.uri."
            )
        time.sleep(1.0)


def run_worker(
    tuner: ChiefWorkerTuner, row: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run the chief's trials until it hands out no more; ``row(trial)`` of each trial run here."""
    mine: list[dict[str, Any]] = []
    original = tuner.on_trial_end

    def record(trial):
        mine.append(row(trial))
        original(trial)

    tuner.on_trial_end = record
    tuner.search()
    return mine
