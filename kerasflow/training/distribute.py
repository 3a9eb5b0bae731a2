"""Training on several devices or machines: strategy choice, TF_CONFIG, per-replica batch.

``train.strategy`` picks a ``tf.distribute`` strategy:

- ``default``: one device (TensorFlow's default strategy);
- ``mirrored``: every local GPU (or ``train.cpu_replicas`` logical CPUs) in sync;
- ``multi_worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` over the
  workers listed in the standard ``TF_CONFIG`` (``kerasflow train --workers ...
  --worker-index I`` writes it);
- ``tpu``: :class:`tf.distribute.TPUStrategy` on the TPU the cluster resolver finds;
- ``auto``: ``multi_worker`` when ``TF_CONFIG`` lists several workers, else
  ``mirrored`` when there are several GPUs (or ``cpu_replicas > 1``), else ``default``.

``data.batch_size`` is the *global* batch: each of the N replicas gets
``batch_size / N`` examples per step. ``train.scale_learning_rate`` multiplies
the learning rate by N (the linear scaling rule).

Single-machine strategies train with ``model.fit``. Multi-worker runs train
with kerasflow's own step loop (:mod:`kerasflow.training.custom_loop`) because
``model.fit`` fails under MultiWorkerMirroredStrategy with Keras 3.15 (keras
issue 20585). Only the chief logs to MLflow, writes the shared work dir and
registers the model; the other workers log nothing and keep their private
files under ``<work dir>/workers/worker-<i>/``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from kerasflow.errors import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


@dataclass(frozen=True)
class Distribution:
    """The resolved strategy of this process and its place in the cluster.

    Attributes:
        strategy: the ``tf.distribute.Strategy`` to build and train under.
        kind: the resolved strategy name (never ``auto``).
        num_workers: worker processes in the job (1 off multi-worker).
        worker_index: this process's index among the workers.
        is_chief: this process logs, registers and owns the shared work dir.
    """

    strategy: tf.distribute.Strategy
    kind: str
    num_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    @property
    def num_replicas(self) -> int:
        """Replicas in sync over the whole job (devices times workers)."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def custom_loop(self) -> bool:
        """True when training must use kerasflow's own step loop instead of ``model.fit``."""
        return self.kind == "multi_worker"

    def scope(self):
        """The strategy's scope (build and compile the model inside it)."""
        return self.strategy.scope()

    def per_replica_batch(self, global_batch: int) -> int:
        """``global_batch / replicas``; a ConfigError when it does not divide evenly."""
        n = self.num_replicas
        if global_batch % n:
            raise ConfigError(
                f"data.batch_size is the global batch and must be divisible by the "
                f"{n} replicas of train.strategy {self.kind!r}. Received: "
                f"data.batch_size={global_batch}. Use a multiple of {n}."
            )
        return global_batch // n

    def own_dir(self, work: Path) -> Path:
        """Where this process writes: the run's work dir for the chief, a private one otherwise."""
        return work if self.is_chief else work / "workers" / f"worker-{self.worker_index}"

    def shared_dir(self, own: Path) -> Path:
        """The chief's work dir, given :meth:`own_dir`'s result."""
        return own if self.is_chief else own.parent.parent


def learning_rate_scale(train_config, dist: Distribution) -> float:
    """The factor applied to the learning rate: replicas when ``scale_learning_rate``, else 1."""
    return float(dist.num_replicas) if train_config.scale_learning_rate else 1.0


def scaled_compile_config(config, dist: Distribution):
    """``config.compile`` with the learning rate scaled by :func:`learning_rate_scale`."""
    scale = learning_rate_scale(config.train, dist)
    if scale == 1.0:
        return config.compile
    optimizer = config.compile.optimizer
    log.info(
        "scaling the learning rate by %g replicas: %g -> %g",
        scale,
        optimizer.learning_rate,
        optimizer.learning_rate * scale,
    )
    return config.compile.model_copy(
        update={
            "optimizer": optimizer.model_copy(
                update={"learning_rate": optimizer.learning_rate * scale}
            )
        }
    )


# ------------------------------------------------------------------ TF_CONFIG
def tf_config(workers: list[str], index: int) -> dict:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``workers`` (``host:port``).

    Worker 0 is the chief.

    Example:
        >>> tf_config(["10.0.0.1:2222", "10.0.0.2:2222"], 1)
        {'cluster': {'worker': ['10.0.0.1:2222', '10.0.0.2:2222']}, 'task': {'type': 'worker', 'index': 1}}
    """
    workers = [w.strip() for w in workers if w.strip()]
    if not workers:
        raise ConfigError("--workers needs at least one host:port. Received: an empty list.")
    for address in workers:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--workers entries must be host:port with a port in 1..65535. "
                f"Received: {address!r}"
            )
    if len(set(workers)) != len(workers):
        raise ConfigError(f"--workers lists an address twice. Received: {','.join(workers)}")
    if not 0 <= index < len(workers):
        raise ConfigError(
            f"--worker-index must be in 0..{len(workers) - 1} for {len(workers)} workers. "
            f"Received: {index}"
        )
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}


def tf_config_json(workers: list[str], index: int) -> str:
    """:func:`tf_config` as the JSON text to put in the ``TF_CONFIG`` environment variable."""
    return json.dumps(tf_config(workers, index))


def _cluster():
    """TensorFlow's own reading of ``TF_CONFIG``: (resolver, number of workers)."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec().as_dict()
    workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    return resolver, workers


# ------------------------------------------------------------------ devices
def configure_cpu_replicas(count: int | None) -> None:
    """Split the CPU into ``count`` logical devices (must run before TensorFlow uses a device).

    Lets ``mirrored`` run N replicas on one CPU, which is how kerasflow's tests
    exercise multi-device training without GPUs.

    Raises:
        ConfigError: TensorFlow already set up its devices with another split.
    """
    if not count:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as exc:
        have = len(tf.config.list_logical_devices("CPU"))
        if have == count:
            return
        raise ConfigError(
            f"train.cpu_replicas={count} must be set before TensorFlow starts using devices, "
            f"but this process already has {have} CPU device(s). Train in a fresh process "
            f"(e.g. the kerasflow command). ({exc})"
        ) from None


def _gpus() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def _mirrored(cpu_replicas: int | None) -> tf.distribute.Strategy:
    if cpu_replicas and not _gpus():
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.MirroredStrategy()


_CACHE: dict[tuple, Distribution] = {}


def setup(train_config) -> Distribution:
    """Resolve ``train.strategy`` into a :class:`Distribution` (once per process).

    Call it before anything else touches TensorFlow devices: it splits the CPU
    for ``train.cpu_replicas``. A multi-worker strategy can be created only
    once per process, so the result is cached.

    Raises:
        ConfigError: an impossible combination (a TPU that is not there, ...).
    """
    key = (train_config.strategy, train_config.cpu_replicas, train_config.worker_timeout_s)
    if key in _CACHE:
        return _CACHE[key]
    configure_cpu_replicas(train_config.cpu_replicas)
    kind = train_config.strategy
    resolver, workers = _cluster()
    if kind == "auto":
        if workers > 1:
            kind = "multi_worker"
        elif _gpus() > 1 or (train_config.cpu_replicas or 0) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    elif workers > 1 and kind != "multi_worker":
        log.warning(
            "TF_CONFIG lists %d workers but train.strategy is %r: training on this machine only",
            workers,
            kind,
        )
    if kind == "default":
        dist = Distribution(tf.distribute.get_strategy(), "default")
    elif kind == "mirrored":
        dist = Distribution(_mirrored(train_config.cpu_replicas), "mirrored")
    elif kind == "tpu":
        dist = Distribution(_tpu_strategy(), "tpu")
    else:
        dist = _multi_worker(resolver, workers, train_config)
    log.info(
        "strategy %s: %d replica(s), worker %d of %d%s",
        dist.kind,
        dist.num_replicas,
        dist.worker_index,
        dist.num_workers,
        " (chief)" if dist.is_chief else "",
    )
    _CACHE[key] = dist
    return dist


def _tpu_strategy() -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise ConfigError(
            f"train.strategy 'tpu' found no TPU ({exc}). Run on a TPU VM or set "
            "train.strategy to auto."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker(resolver, workers: int, train_config) -> Distribution:
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=float(train_config.worker_timeout_s)
    )
    if workers > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options
        )
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    resolved = strategy.cluster_resolver
    task_type, task_id = resolved.task_type, resolved.task_id
    spec = resolved.cluster_spec().as_dict()
    has_chief = bool(spec.get("chief"))
    is_chief = (
        task_type is None
        or task_type == "chief"
        or (task_type == "worker" and task_id == 0 and not has_chief)
    )
    index = int(task_id or 0) + (1 if has_chief and task_type == "worker" else 0)
    return Distribution(
        strategy, "multi_worker", num_workers=max(1, workers), worker_index=index, is_chief=is_chief
    )
