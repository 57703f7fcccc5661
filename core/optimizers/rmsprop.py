"""RMSProp: steps divided by a running root-mean-square of the updates."""

import tensorflow as tf

from core import utils
from core.optimizers import base


def rmsprop_step(
    update: tf.Tensor,
    mom: tf.Tensor,
    ms: tf.Tensor,
    mg: tf.Tensor | None,
    learning_rate: tf.Tensor,
    decay: tf.Tensor,
    one_minus_decay: tf.Tensor,
    mu: tf.Tensor,
    epsilon: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """One RMSProp step: returns (new mom, new ms, new mg); the parameter moves by -mom.

    ms' = (1 - decay) * g^2 + decay * ms
    mg' = (1 - decay) * g + decay * mg                  (centered only; mg is None otherwise)
    mom' = mu * mom + lr * g / sqrt(ms' - mg'^2 + epsilon)   (without "- mg'^2" if not centered)
    """
    ms = tf.square(update) * one_minus_decay + ms * decay
    if mg is None:
        denominator = ms + epsilon
    else:
        mg = update * one_minus_decay + mg * decay
        denominator = ms - tf.square(mg) + epsilon
    mom = mu * mom + learning_rate * update * tf.math.rsqrt(denominator)
    return mom, ms, mg


class RMSProp(base.Optimizer):
    """RMSProp (Tieleman & Hinton, 2012, Coursera lecture 6.5) with plain momentum.

    Slots: `mom` (the momentum, which is the step taken), `ms` (running mean of the
    squared update) and, when centered, `mg` (running mean of the update, so the
    denominator estimates the variance rather than the second moment), all
    zero-initialised; their variables are named "momentum/...", "rms/..." and "mg/...", as
    Sonnet's are. A sparse update first sums rows with the same index, then updates
    only those rows of the parameter and its slots.

    Args:
      learning_rate: a number, a `tf.Variable` or a schedule of the step count.
      decay: how much of the running averages each step keeps.
      momentum: the decay of `mom`; 0 gives plain RMSProp.
      epsilon: added under the square root so the denominator is never zero.
      centered: whether to divide by the estimated variance instead of the second moment
        (Graves, 2013, arXiv:1308.0850, eq. 38-41).
      name: module name.
    """

    _hyperparameter_names = ("learning_rate", "decay", "momentum", "epsilon")

    @property
    def _slots(self) -> tuple[tuple[str, str], ...]:
        plain = (("mom", "momentum"), ("ms", "rms"))
        return plain + (("mg", "mg"),) if self.centered else plain

    def __init__(
        self,
        learning_rate: base.Hyperparameter,
        decay: base.Hyperparameter = 0.9,
        momentum: base.Hyperparameter = 0.0,
        epsilon: base.Hyperparameter = 1e-10,
        centered: bool = False,
        name: str | None = None,
    ):
        super().__init__(name=name)
        base.check_hyperparameter(self, "learning_rate", learning_rate)
        base.check_hyperparameter(self, "decay", decay, low=0.0, high=1.0)
        base.check_hyperparameter(self, "momentum", momentum, low=0.0)
        base.check_hyperparameter(self, "epsilon", epsilon, low=0.0)
        if not isinstance(centered, bool):
            raise TypeError(f"{utils.describe(self)}: centered must be a bool, got {centered!r}")
        self.learning_rate = learning_rate
        self.decay = decay
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered
        self.mom = []
        self.ms = []
        self.mg = []

    def _coefficients(self, hyper: tuple, count: tf.Tensor | None) -> tuple:
        learning_rate, decay, mu, epsilon = hyper
        return learning_rate, decay, 1.0 - decay, mu, epsilon

    def _dense(self, update: tf.Tensor, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        mom_var, ms_var, mg_var = slots if self.centered else slots + (None,)
        dtype = c[0].dtype  # float32 for half-precision parameters
        mom, ms, mg = rmsprop_step(
            base.cast(update, dtype),
            base.cast(mom_var, dtype),
            base.cast(ms_var, dtype),
            None if mg_var is None else base.cast(mg_var, dtype),
            *c,
        )
        mom = base.cast(mom, parameter.dtype)
        parameter.assign_sub(mom, read_value=False)
        mom_var.assign(mom, read_value=False)
        ms_var.assign(base.cast(ms, ms_var.dtype), read_value=False)
        if mg_var is not None:
            mg_var.assign(base.cast(mg, mg_var.dtype), read_value=False)

    def _sparse(self, update: tf.IndexedSlices, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        mom_var, ms_var, mg_var = slots if self.centered else slots + (None,)
        dtype = c[0].dtype
        values, indices = base.deduplicate(update)
        mg = None if mg_var is None else base.cast(base.gather_rows(mg_var, indices), dtype)
        mom = base.cast(base.gather_rows(mom_var, indices), dtype)
        ms = base.cast(base.gather_rows(ms_var, indices), dtype)
        mom, ms, mg = rmsprop_step(base.cast(values, dtype), mom, ms, mg, *c)
        mom = base.cast(mom, parameter.dtype)
        parameter.scatter_sub(tf.IndexedSlices(mom, indices))
        mom_var.scatter_update(tf.IndexedSlices(mom, indices))
        ms_var.scatter_update(tf.IndexedSlices(base.cast(ms, ms_var.dtype), indices))
        if mg_var is not None:
            mg_var.scatter_update(tf.IndexedSlices(base.cast(mg, mg_var.dtype), indices))
