"""Helpers for running modules under `tf.distribute` strategies, and the state-sync policy.

Modules work unchanged inside any strategy: build them under `strategy.scope()` and call
them inside `strategy.run`. Two things are the step's business, not the modules':

1. Gradients. The step all-reduces them across replicas with `all_reduce_gradients`
   before giving them to an optimizer. Every replica then applies the same update, so
   parameters and optimizer slots stay identical without further communication.
   Skipping the all-reduce under a multi-replica strategy makes replicas drift apart
   silently (TensorFlow keeps one copy per replica and writes each independently).

2. State that modules update as they run. Each kind is kept in sync by how its
   variable is made (see `state_variable`):

   - BatchNorm moving mean/variance, moving averages: "mean". Each replica sees
     different data; the write is averaged over replicas.
   - CrossReplicaBatchNorm moving statistics: "mean". The values already agree;
     averaging keeps them exact.
   - Update counters (integers): "first". Every replica counts the same steps.
   - SpectralNorm power-iteration vector: "first". Computed from the (synchronised)
     weight; the first replica's value is written everywhere.
   - Optimizer slots and step counter: "none". Computed from all-reduced gradients,
     so identical by construction.
   - Dropout random state: "none". Every call advances each copy by one fixed step,
     whatever the replica's batch size; the replica id picks the counter block of the
     draw, so masks still differ.
"""

import json
import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

__all__ = [
    "all_reduce_gradients",
    "state_variable",
    "num_replicas",
    "logical_cpus",
    "make_strategy",
    "is_chief",
    "worker_dir",
]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

_AGGREGATIONS = {
    "mean": tf.VariableAggregation.MEAN,
    "first": tf.VariableAggregation.ONLY_FIRST_REPLICA,
    "none": tf.VariableAggregation.NONE,
}


def state_variable(initial_value: Any, name: str, aggregation: str = "mean", **kwargs: Any) -> tf.Variable:
    """Makes a non-trainable variable for state that a module writes while it runs.

    Args:
      initial_value: the variable's first value.
      name: the variable's name.
      aggregation: how writes made inside a replica are combined, so every replica
        keeps the same value: "mean" (the written values are averaged over replicas;
        for state computed from each replica's own data), "first" (the first
        replica's value is written to all; for state every replica computes alike,
        integers included) or "none" (no communication; only for state computed
        from values that are already identical on every replica).
      **kwargs: passed on to `tf.Variable` (`dtype`, `shape`).

    Returns:
      The variable, mirrored with that aggregation when made under a strategy.
    """
    if aggregation not in _AGGREGATIONS:
        raise ValueError(f"state_variable aggregation must be one of {sorted(_AGGREGATIONS)}, got {aggregation!r}")
    return tf.Variable(
        initial_value,
        name=name,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=_AGGREGATIONS[aggregation],
        **kwargs,
    )


def num_replicas() -> int:
    """Replicas in sync in the current strategy (1 outside any strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_reduce_gradients(gradients: Sequence[Any], reduce_op: str = "mean") -> list[Any]:
    """All-reduces gradients across the replicas of the current strategy, keeping Nones.

    Call it inside `strategy.run`, between `tape.gradient` and the optimizer. A None
    gradient (a variable the loss does not touch) stays None and costs nothing. Dense
    tensors and `tf.IndexedSlices` are reduced in one batched collective. Outside any
    strategy, or with one replica, the gradients come back unchanged.

    Args:
      gradients: a flat list of tensors, `tf.IndexedSlices` or None.
      reduce_op: "mean" (for losses averaged over each replica's batch) or "sum" (for
        losses already divided by the global batch size).

    Returns:
      A list like `gradients`, reduced.
    """
    ops = {"mean": tf.distribute.ReduceOp.MEAN, "sum": tf.distribute.ReduceOp.SUM}
    if reduce_op not in ops:
        raise ValueError(f"all_reduce_gradients reduce_op must be 'mean' or 'sum', got {reduce_op!r}")
    gradients = list(gradients)
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        raise RuntimeError(
            "all_reduce_gradients must be called inside strategy.run (a replica context); "
            "it was called in the cross-replica context"
        )
    if ctx.num_replicas_in_sync == 1:
        return gradients
    present = [i for i, g in enumerate(gradients) if g is not None]
    if not present:
        return gradients
    reduced = ctx.all_reduce(ops[reduce_op], [gradients[i] for i in present])
    for i, g in zip(present, reduced):
        gradients[i] = g
    return gradients


def logical_cpus(count: int) -> list[str]:
    """Splits the first CPU into `count` logical devices and returns their names.

    Lets multi-replica code run on one CPU (`tf.distribute.MirroredStrategy(
    logical_cpus(4))`). It must run before TensorFlow initialises its devices, that is
    before the first op; afterwards it returns the existing logical CPUs if there are
    enough of them and raises RuntimeError if not.
    """
    if count < 1:
        raise ValueError(f"logical_cpus needs count >= 1, got {count}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        pass  # Devices already initialised: use what exists, if it is enough.
    names = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(names) < count:
        raise RuntimeError(
            f"logical_cpus({count}): TensorFlow already initialised {len(names)} CPU device(s); "
            "call logical_cpus before running any TensorFlow op"
        )
    return names[:count]


def make_strategy(name: str = "default", replicas: int = 0, tpu: str | None = None) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy a training program asked for by name.

    Call it first thing in a program, before any other TensorFlow op: splitting the CPU
    into logical devices and joining a cluster both have to happen before TensorFlow
    initialises its devices.

    Args:
      name: "default" (one device: the default strategy), "mirrored" (data parallel
        over this machine's GPUs, or over `replicas` logical CPUs on a machine without
        one), "multi_worker" (`MultiWorkerMirroredStrategy`, the cluster and this
        process's place in it read from the `TF_CONFIG` environment variable) or "tpu"
        (`TPUStrategy` on the TPU at `tpu`).
      replicas: with "mirrored" on a machine without GPUs, split the CPU into this many
        logical devices; 0 uses the visible devices as they are.
      tpu: with "tpu", the TPU's name or grpc:// address ("" or "local" for a TPU VM).

    Returns:
      The strategy.

    Raises:
      ValueError: for an unknown name, a negative `replicas`, `replicas` with a strategy
        other than "mirrored", a `tpu` address without "tpu", or "multi_worker" without
        a `TF_CONFIG` naming a cluster.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValueError(f"replicas must be a non-negative integer, got {replicas!r}")
    if replicas and name != "mirrored":
        raise ValueError(f"replicas={replicas} splits the CPU for the mirrored strategy only; the strategy is {name!r}")
    if tpu is not None and name != "tpu":
        raise ValueError(f"a TPU address ({tpu!r}) goes with the tpu strategy only; the strategy is {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None
        if replicas and not tf.config.list_physical_devices("GPU"):
            devices = logical_cpus(replicas)
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        if not config.get("cluster"):
            raise ValueError(
                "the multi_worker strategy reads the cluster from the TF_CONFIG environment variable, "
                'e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}; '
                "TF_CONFIG names no cluster"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes a run's checkpoints, summaries and records.

    Every process of a one-machine strategy is the chief. In a multi-worker cluster it is
    the task of type "chief", or worker 0 when the cluster has no chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    return task_type in (None, "worker") and task_id in (None, 0) and "chief" not in resolver.cluster_spec().as_dict()


def worker_dir(strategy: tf.distribute.Strategy, directory: str) -> str:
    """Where this process writes: `directory` for the chief, a private folder below it for the others.

    In a multi-worker cluster every worker takes part in writing a checkpoint (the
    variables' values are gathered collectively), but only the chief's copy is kept;
    the others write to `directory/workers/<task type>_<task id>`, which they may
    delete afterwards.
    """
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    return os.path.join(directory, "workers", f"{resolver.task_type}_{resolver.task_id}")
