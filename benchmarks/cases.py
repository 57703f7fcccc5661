"""Builders of `Case`s for each library: ours (core), dm-sonnet 2 and Keras 3.

Every implementation trains with Adam (learning rate 1e-3, epsilon 1e-8) on the same
loss, the mean square of the outputs, so that the only difference between two cases of
a workload is the library that computes it. The loss is computed in the workload's
dtype, like everything else.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

import core
from benchmarks.registry import Case, Nest

LEARNING_RATE = 1e-3
EPSILON = 1e-8


def loss_of(outputs: Nest) -> tf.Tensor:
    """The mean square of every floating-point output, summed over outputs."""
    leaves = [o for o in tf.nest.flatten(outputs) if o.dtype.is_floating]
    return tf.add_n([tf.reduce_mean(tf.square(o)) for o in leaves])


def normal(seed: int, shape: list[int], dtype: tf.DType) -> tf.Tensor:
    """Standard normal data, reproducible from `seed`, cast to `dtype`."""
    return tf.cast(tf.random.stateless_normal(shape, seed=[seed, len(shape)]), dtype)


def padding_mask(seed: int, batch: int, length: int, masked_fraction: float) -> tf.Tensor:
    """A bool [batch, length] key mask, True where valid, with the last part of each row masked.

    Row b keeps its first `length - m_b` entries, where the masked counts m_b average
    `masked_fraction * length` (a padded set of entities, as in AlphaStar's encoder).
    At least one entry per row stays valid.
    """
    rng = np.random.default_rng(seed)
    mean = masked_fraction * length
    counts = np.clip(np.round(rng.uniform(0, 2 * mean, size=batch)), 0, length - 1).astype(np.int32)
    valid = length - counts
    return tf.constant(np.arange(length)[None, :] < valid[:, None])


def _replicas() -> int:
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def _case(
    *,
    batch_size: int,
    make_inputs: Callable[[int], Nest],
    forward: Callable[[Nest], Nest],
    train_forward: Callable[[Nest], Nest] | None,
    trainable: Callable[[], list],
    build_optimizer: Callable[[list], None],
    update: Callable[[list, list], None],
    state: Callable[[], list],
    loss: Callable[[Nest], tf.Tensor] = loss_of,
) -> Case:
    """A Case from a library's pieces; the parameter list is fixed by `initialize_optimizer`."""
    train_forward = train_forward or forward
    params: list = []

    def initialize(inputs: Nest) -> None:
        train_forward(inputs)
        if train_forward is not forward:
            forward(inputs)

    def initialize_optimizer() -> None:
        params[:] = trainable()
        build_optimizer(params)

    def loss_and_grads(inputs: Nest) -> tuple[tf.Tensor, list]:
        with tf.GradientTape() as tape:
            value = loss(train_forward(inputs))
        return value, tape.gradient(value, params)

    return Case(
        batch_size=batch_size,
        make_inputs=make_inputs,
        initialize=initialize,
        initialize_optimizer=initialize_optimizer,
        forward=forward,
        loss_and_grads=loss_and_grads,
        apply=lambda grads: update(grads, params),
        variables=state,
    )


def core_case(
    module: tf.Module,
    batch_size: int,
    make_inputs: Callable[[int], Nest],
    forward: Callable[[Nest], Nest],
    train_forward: Callable[[Nest], Nest] | None = None,
    optimizer: core.Module | None = None,
    loss: Callable[[Nest], tf.Tensor] = loss_of,
) -> Case:
    """Our implementation: `core.optimizers.Adam`, gradients all-reduced by `core.distribute`.

    Args:
      module: holds every model variable.
      batch_size: examples per batch.
      make_inputs: seed -> batch.
      forward: batch -> outputs, in inference mode.
      train_forward: batch -> outputs, in training mode; `forward` by default.
      optimizer: a `core.optimizers` instance for a model that trains with another
        (the DNC's RMSProp); Adam by default.
      loss: train outputs -> the scalar loss, for a model whose peers train it on its
        own loss (GQN's negative ELBO); the mean square of the outputs by default.
    """
    opt = optimizer or core.optimizers.Adam(LEARNING_RATE, epsilon=EPSILON)

    def update(grads: list, params: list) -> None:
        opt.apply(core.distribute.all_reduce_gradients(grads), params)

    return _case(
        batch_size=batch_size,
        make_inputs=make_inputs,
        forward=forward,
        train_forward=train_forward,
        trainable=lambda: list(module.trainable_variables),
        build_optimizer=opt.build,
        update=update,
        state=lambda: list(module.variables) + list(opt.variables),
        loss=loss,
    )


def sonnet_case(
    module: tf.Module,
    batch_size: int,
    make_inputs: Callable[[int], Nest],
    forward: Callable[[Nest], Nest],
    train_forward: Callable[[Nest], Nest] | None = None,
) -> Case:
    """dm-sonnet 2's implementation: `snt.optimizers.Adam`, gradients all-reduced by the replica context.

    Sonnet's optimizers accept only its own `snt.distribute.Replicator` among the
    multi-replica strategies. Its Adam has no `build`: one zero update (which changes
    no parameter) creates its slots.
    """
    import sonnet as snt

    opt = snt.optimizers.Adam(LEARNING_RATE, epsilon=EPSILON)

    def build(params: list) -> None:
        opt.apply([tf.zeros_like(p) for p in params], params)

    def update(grads: list, params: list) -> None:
        if _replicas() > 1:
            grads = tf.distribute.get_replica_context().all_reduce("mean", grads)
        opt.apply(grads, params)

    return _case(
        batch_size=batch_size,
        make_inputs=make_inputs,
        forward=forward,
        train_forward=train_forward,
        trainable=lambda: list(module.trainable_variables),
        build_optimizer=build,
        update=update,
        state=lambda: list(tf.Module.variables.fget(module)) + list(tf.Module.variables.fget(opt)),
    )


def keras_case(
    model: Any,
    batch_size: int,
    make_inputs: Callable[[int], Nest],
    forward: Callable[[Nest], Nest],
    train_forward: Callable[[Nest], Nest] | None = None,
) -> Case:
    """Keras 3's implementation: `keras.optimizers.Adam`.

    Under a multi-replica strategy Keras's optimizer sums the gradients over replicas
    itself; dividing them by the replica count first makes that the mean, as ours.
    """
    import keras

    opt = keras.optimizers.Adam(LEARNING_RATE, epsilon=EPSILON)

    def update(grads: list, params: list) -> None:
        n = _replicas()
        if n > 1:
            grads = [g / n for g in grads]
        opt.apply_gradients(zip(grads, params))

    return _case(
        batch_size=batch_size,
        make_inputs=make_inputs,
        forward=forward,
        train_forward=train_forward,
        trainable=lambda: list(model.trainable_variables),
        build_optimizer=opt.build,
        update=update,
        state=lambda: list(model.variables) + list(opt.variables),
    )
