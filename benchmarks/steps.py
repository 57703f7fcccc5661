"""The timed steps: a `Case`'s forward or train step in eager, `tf.function` or XLA mode.

Single device, each mode wraps the whole step: `tf.function(step)` or
`tf.function(step, jit_compile=True)` (forward, backward and optimizer update in one
XLA computation).

Replicated (the train step with `--replicas N > 1`), the step is `strategy.run` of the
per-replica step and a mean of the replicas' losses. A `jit_compile` function that
contains the strategy's cross-replica all-reduce fails on CPU (XLA compiles for one
device and cannot reach the other replicas' variables), so XLA mode compiles each
replica's forward and backward pass (`Case.loss_and_grads`, a `jit_compile=True`
function called inside `strategy.run`) and leaves the all-reduce and the optimizer
update outside the compiled part, in the surrounding `tf.function`. A step whose
forward pass itself writes synchronised state (batch-norm moving averages, which
average the replicas' writes) cannot be compiled this way: TensorFlow does not allow
that cross-replica write inside a nested function, and the row reports the error.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from benchmarks.registry import Case, Nest

MODES = ("eager", "function", "xla")
STEPS = ("forward", "train")


class UnsupportedError(RuntimeError):
    """A step that cannot run in the requested mode, with the reason."""


def _check(step: str, mode: str) -> None:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; steps are {STEPS}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; modes are {MODES}")


def wrap(fn: Callable[..., Any], mode: str, autograph: bool = True) -> Callable[..., Any]:
    """`fn` itself (eager), `tf.function(fn)` or `tf.function(fn, jit_compile=True)` (xla).

    `autograph` as in `tf.function`. The harness keeps TensorFlow's default, so that a
    first call costs what it costs a user; no workload needs AutoGraph, and without it
    tracing is several times faster (BigGAN's smoke-size gradient step: about 15 s
    against 4 s on a 2-core CPU), which the tests use.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; modes are {MODES}")
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=mode == "xla", autograph=autograph)


def single_device(case: Case, step: str, mode: str, autograph: bool = True) -> Callable[[Nest], Nest]:
    """The step on one device: `forward` returns the outputs, `train` the loss."""
    _check(step, mode)
    if step == "forward":
        return wrap(case.forward, mode, autograph)
    return wrap(_train_step(case, case.loss_and_grads), mode, autograph)


def _train_step(case: Case, loss_and_grads: Callable[[Nest], tuple]) -> Callable[[Nest], tf.Tensor]:
    """Loss and gradients by `loss_and_grads`, then the case's update; returns the loss."""

    def train(inputs: Nest) -> tf.Tensor:
        loss, grads = loss_and_grads(inputs)
        case.apply(grads)
        return loss

    return train


def replicated_train(case: Case, mode: str, strategy: tf.distribute.Strategy) -> Callable[[Any], tf.Tensor]:
    """The train step under `strategy`, on distributed inputs; returns the mean loss.

    In XLA mode only each replica's `loss_and_grads` is compiled (see the module
    docstring); the all-reduce inside `case.apply` runs outside XLA.
    """
    _check("train", mode)
    compute = tf.function(case.loss_and_grads, jit_compile=True) if mode == "xla" else case.loss_and_grads
    replica = _train_step(case, compute)

    def train(distributed_inputs: Any) -> tf.Tensor:
        losses = strategy.run(replica, args=(distributed_inputs,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    if mode != "xla":
        return train if mode == "eager" else tf.function(train)
    traced = tf.function(train)

    def explained(distributed_inputs: Any) -> tf.Tensor:
        try:
            return traced(distributed_inputs)
        except RuntimeError as e:
            if "merge_call" not in str(e):
                raise
            raise UnsupportedError(
                "XLA with replicas compiles each replica's pass apart from the all-reduce, but this "
                "forward pass writes state synchronised across replicas (such as batch-norm moving "
                "averages), which TensorFlow refuses inside that compiled function"
            ) from e

    return explained


def distribute_inputs(strategy: tf.distribute.Strategy, batches: list[Nest]) -> Any:
    """One batch per replica, as the distributed value `strategy.run` takes."""
    if len(batches) != strategy.num_replicas_in_sync:
        raise ValueError(f"need one batch per replica ({strategy.num_replicas_in_sync}), got {len(batches)}")
    return strategy.experimental_distribute_values_from_function(lambda ctx: batches[ctx.replica_id_in_sync_group])


def make(case: Case, step: str, mode: str, strategy: tf.distribute.Strategy | None = None) -> Callable[[Any], Nest]:
    """The step to time: replicated when `strategy` has several replicas and the step is `train`."""
    if step == "train" and strategy is not None and strategy.num_replicas_in_sync > 1:
        return replicated_train(case, mode, strategy)
    return single_device(case, step, mode)


def to_host(outputs: Nest) -> list[np.ndarray]:
    """Every output as a host (NumPy) array, so the work behind it has finished.

    On the CPU `np.asarray` views a tensor's buffer without copying it (`.numpy()`
    would copy), so this costs microseconds whatever the output size; on an
    accelerator it waits for the result and copies it to the host.
    """
    # NumPy cannot view a bfloat16 scalar; scalars are copied, which costs nothing.
    return [np.asarray(leaf) if leaf.shape.rank else leaf.numpy() for leaf in tf.nest.flatten(outputs)]
