"""SGD: plain stochastic gradient descent."""

import tensorflow as tf

from core.optimizers import base


class SGD(base.Optimizer):
    """Stochastic gradient descent: `parameter -= learning_rate * update`.

    Keeps no slots, so unlike the other optimizers it takes any list of parameters on
    every call (one SGD may train a GAN's generator and discriminator in turn), as
    Sonnet's does. A sparse update subtracts each row of `update.values` from the row its
    index names; repeated indices subtract once each, that is, their sum.

    Args:
      learning_rate: a number, a `tf.Variable` or a schedule of the step count (see
        `core.optimizers.base`). With a schedule the optimizer counts its steps in `step`.
      name: module name.
    """

    _hyperparameter_names = ("learning_rate",)

    def __init__(self, learning_rate: base.Hyperparameter, name: str | None = None):
        super().__init__(name=name)
        base.check_hyperparameter(self, "learning_rate", learning_rate)
        self.learning_rate = learning_rate

    def _dense(self, update: tf.Tensor, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        (learning_rate,) = c
        step = base.cast(update, learning_rate.dtype) * learning_rate
        parameter.assign_sub(base.cast(step, parameter.dtype), read_value=False)

    def _sparse(self, update: tf.IndexedSlices, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        (learning_rate,) = c
        step = base.cast(update.values, learning_rate.dtype) * learning_rate
        parameter.scatter_sub(tf.IndexedSlices(base.cast(step, parameter.dtype), update.indices))
