"""Per-worker input pipelines for distributed training.

Each input pipeline (one per worker) reads only its share of the split:

- file and in-memory sources are sharded at the *file level*: the list of
  paths (or array rows) is cut before anything is read, so a worker never
  opens another worker's files;
- stream sources (TFRecord, TFDS) are sharded at the *data level*: every
  worker reads the records in order and keeps every N-th one.

The batch is the per-pipeline batch (the global batch divided by the number
of pipelines), and tf.data's own auto-sharding is switched off because the
sharding is already done here.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from kerasflow.pipelines.builder import PreparedData, Step, run_plan


def shard_plan(
    prepared: PreparedData,
    split: str,
    num_shards: int,
    index: int,
    batch_size: int,
    training: bool | None = None,
) -> list[Step]:
    """The plan of one split for input pipeline ``index`` of ``num_shards``.

    Args:
        prepared: the loaded, split data.
        split: ``train``, ``validation`` or ``test``.
        num_shards: number of input pipelines (workers).
        index: this pipeline's index, ``0 <= index < num_shards``.
        batch_size: the batch this pipeline produces (per worker, not global).
        training: shuffle and augment; defaults to ``split == "train"``.
    """
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index must be in [0, {num_shards}). Received: index={index}")
    data_config = prepared.data_config.model_copy(update={"batch_size": batch_size})
    local = dataclasses.replace(prepared, data_config=data_config)
    steps = local.plan(split, training=training)
    if num_shards > 1:
        level = "file" if prepared.source.kind in ("files", "arrays") else "data"
        # Step 0 lists the files (or rows, or records): cut right after it, before any
        # shuffle, read or decode, so each pipeline does only its own share of the work.
        steps.insert(
            1,
            Step(
                "shard",
                f"{level}-level: keep every {num_shards}th element from {index}",
                dataset_fn=lambda ds: ds.shard(num_shards, index),
            ),
        )
    return steps


def sharded_dataset(
    prepared: PreparedData,
    split: str,
    num_shards: int,
    index: int,
    batch_size: int,
    training: bool | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """The dataset of :func:`shard_plan`, with tf.data auto-sharding off.

    Args:
        repeat: repeat forever (training with a fixed number of steps per epoch,
            so that every worker runs the same number of steps).

    Example:
        >>> ds = sharded_dataset(prepared, "train", num_shards=2, index=0, batch_size=16)
    """
    steps = shard_plan(prepared, split, num_shards, index, batch_size, training)
    ds = run_plan(steps, prepared.data_config.deterministic)
    if repeat:
        ds = ds.repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)
