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

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

__all__ = [
    "all_reduce_gradients",
    "state_variable",
    "num_replicas",
    "logical_cpus",
]

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
