"""Momentum: SGD with a decaying accumulation of past updates, optionally Nesterov's."""

import tensorflow as tf

from core import utils
from core.optimizers import base


def momentum_step(
    update: tf.Tensor, accumulated: tf.Tensor, learning_rate: tf.Tensor, mu: tf.Tensor, use_nesterov: bool
) -> tuple[tf.Tensor, tf.Tensor]:
    """One momentum step: returns (the amount to subtract, the new accumulation).

    accumulated' = mu * accumulated + update
    step = learning_rate * accumulated'                   (classical)
    step = learning_rate * (mu * accumulated' + update)   (Nesterov, Sutskever et al. 2013)
    """
    accumulated = mu * accumulated + update
    if use_nesterov:
        return learning_rate * (mu * accumulated + update), accumulated
    return learning_rate * accumulated, accumulated


class Momentum(base.Optimizer):
    """SGD with momentum: the parameter moves by a decaying sum of past updates.

    The slot `accumulated_momentum` holds one zero-initialised accumulator per parameter.
    A sparse update first sums rows with the same index, then updates only those rows of
    the parameter and of its accumulator; the other rows' accumulators do not decay.

    Args:
      learning_rate: a number, a `tf.Variable` or a schedule of the step count.
      momentum: the decay `mu` of the accumulator; a number, variable or schedule.
      use_nesterov: whether to use Nesterov's momentum (Sutskever et al., 2013, "On the
        importance of initialization and momentum in deep learning").
      name: module name.
    """

    _slots = (("accumulated_momentum", "accumulated_momentum"),)
    _hyperparameter_names = ("learning_rate", "momentum")

    def __init__(
        self,
        learning_rate: base.Hyperparameter,
        momentum: base.Hyperparameter,
        use_nesterov: bool = False,
        name: str | None = None,
    ):
        super().__init__(name=name)
        base.check_hyperparameter(self, "learning_rate", learning_rate)
        base.check_hyperparameter(self, "momentum", momentum, low=0.0)
        if not isinstance(use_nesterov, bool):
            raise TypeError(f"{utils.describe(self)}: use_nesterov must be a bool, got {use_nesterov!r}")
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.use_nesterov = use_nesterov
        self.accumulated_momentum = []

    def _dense(self, update: tf.Tensor, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        (accumulator,) = slots
        learning_rate, mu = c
        dtype = learning_rate.dtype  # float32 for half-precision parameters
        step, accumulated = momentum_step(
            base.cast(update, dtype), base.cast(accumulator, dtype), learning_rate, mu, self.use_nesterov
        )
        accumulator.assign(base.cast(accumulated, accumulator.dtype), read_value=False)
        parameter.assign_sub(base.cast(step, parameter.dtype), read_value=False)

    def _sparse(self, update: tf.IndexedSlices, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        (accumulator,) = slots
        learning_rate, mu = c
        dtype = learning_rate.dtype
        values, indices = base.deduplicate(update)
        step, accumulated = momentum_step(
            base.cast(values, dtype),
            base.cast(base.gather_rows(accumulator, indices), dtype),
            learning_rate,
            mu,
            self.use_nesterov,
        )
        accumulator.scatter_update(tf.IndexedSlices(base.cast(accumulated, accumulator.dtype), indices))
        parameter.scatter_sub(tf.IndexedSlices(base.cast(step, parameter.dtype), indices))
