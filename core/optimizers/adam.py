"""Adam: adaptive moment estimation (Kingma & Ba, 2015, arXiv:1412.6980)."""

import tensorflow as tf

from core.optimizers import base


def adam_step(
    update: tf.Tensor,
    m: tf.Tensor,
    v: tf.Tensor,
    learning_rate: tf.Tensor,
    beta1: tf.Tensor,
    one_minus_beta1: tf.Tensor,
    beta2: tf.Tensor,
    one_minus_beta2: tf.Tensor,
    epsilon: tf.Tensor,
    c1: tf.Tensor,
    c2: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One Adam step (Algorithm 1 of the paper): returns (amount to subtract, new m, new v).

    m' = beta1 * m + (1 - beta1) * g          first moment
    v' = beta2 * v + (1 - beta2) * g^2        second raw moment
    step = lr * (m' / c1) / (sqrt(v' / c2) + epsilon)
    where c1 = 1 - beta1^t and c2 = 1 - beta2^t undo the moments' bias towards zero.
    """
    m = beta1 * m + one_minus_beta1 * update
    v = beta2 * v + one_minus_beta2 * update * update
    return learning_rate * (m / c1) / (tf.sqrt(v / c2) + epsilon), m, v


def _fusable(dtype: tf.DType, *variables: tf.Variable) -> bool:
    """Whether TensorFlow's fused Adam kernel can update `variables` in place: plain
    (not distributed) resource variables of the compute dtype."""
    return all(
        v.dtype == dtype and hasattr(v, "handle") and not isinstance(v, tf.distribute.DistributedValues)
        for v in variables
    )


def _fused_adam_step(update: tf.Tensor, parameter: tf.Variable, m: tf.Variable, v: tf.Variable, c: tuple) -> None:
    """`adam_step` and its assignments as one kernel (`ResourceApplyAdam`) instead of a
    dozen ops, each a pass over the parameter's size; `c` as `Adam._coefficients` gives.

    The kernel takes `lr * sqrt(c2) / c1 * m' / (sqrt(v') + epsilon')`, with epsilon
    added to the uncorrected root; passing `epsilon' = epsilon * sqrt(c2)` makes that
    `lr * (m' / c1) / (sqrt(v' / c2) + epsilon)`, the paper's step (equal in exact
    arithmetic, the same up to rounding in floats).
    """
    learning_rate, beta1, _, beta2, _, epsilon, c1, c2 = c  # the kernel forms 1 - beta itself
    tf.raw_ops.ResourceApplyAdam(
        var=parameter.handle,
        m=m.handle,
        v=v.handle,
        beta1_power=1.0 - c1,
        beta2_power=1.0 - c2,
        lr=learning_rate,
        beta1=beta1,
        beta2=beta2,
        epsilon=epsilon * tf.sqrt(c2),
        grad=update,
    )


class Adam(base.Optimizer):
    """Adam: steps scaled by running estimates of the update's first and second moments.

    Slots `m` and `v` hold the moment estimates, zero-initialised; the step counter `step`
    (int64, named "t") counts the calls to `apply` for the bias correction. A sparse update
    first sums rows with the same index, then updates only those rows of the parameter and
    of `m` and `v` (the other rows' moments do not decay), with the shared step count. A
    dense update of a plain variable (not a distributed one, not half precision) runs as
    TensorFlow's fused Adam kernel, the same step up to rounding (see `_fused_adam_step`).

    Args:
      learning_rate: the step size (alpha in the paper); a number, a `tf.Variable` or a
        schedule of the step count.
      beta1: decay of the first-moment estimate.
      beta2: decay of the second-moment estimate.
      epsilon: added to the denominator so it is never zero.
      name: module name.

    The defaults are the paper's (Kingma & Ba, 2015, Algorithm 1).
    """

    _slots = (("m", "m"), ("v", "v"))
    _hyperparameter_names = ("learning_rate", "beta1", "beta2", "epsilon")
    _always_counts = True

    def __init__(
        self,
        learning_rate: base.Hyperparameter = 0.001,
        beta1: base.Hyperparameter = 0.9,
        beta2: base.Hyperparameter = 0.999,
        epsilon: base.Hyperparameter = 1e-8,
        name: str | None = None,
    ):
        super().__init__(name=name)
        base.check_hyperparameter(self, "learning_rate", learning_rate)
        base.check_hyperparameter(self, "beta1", beta1, low=0.0, high=1.0, high_open=True)
        base.check_hyperparameter(self, "beta2", beta2, low=0.0, high=1.0, high_open=True)
        base.check_hyperparameter(self, "epsilon", epsilon, low=0.0)
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.m = []
        self.v = []

    def _coefficients(self, hyper: tuple, count: tf.Tensor) -> tuple:
        learning_rate, beta1, beta2, epsilon = hyper
        t = tf.cast(count + 1, beta1.dtype)  # this step's number, from 1
        c1 = 1.0 - tf.pow(beta1, t)
        c2 = 1.0 - tf.pow(beta2, t)
        return learning_rate, beta1, 1.0 - beta1, beta2, 1.0 - beta2, epsilon, c1, c2

    def _dense(self, update: tf.Tensor, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        m, v = slots
        dtype = c[0].dtype  # float32 for half-precision parameters
        if _fusable(dtype, parameter, m, v):
            _fused_adam_step(update, parameter, m, v, c)
            return
        step, new_m, new_v = adam_step(base.cast(update, dtype), base.cast(m, dtype), base.cast(v, dtype), *c)
        parameter.assign_sub(base.cast(step, parameter.dtype), read_value=False)
        m.assign(base.cast(new_m, m.dtype), read_value=False)
        v.assign(base.cast(new_v, v.dtype), read_value=False)

    def _sparse(self, update: tf.IndexedSlices, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        m, v = slots
        dtype = c[0].dtype
        values, indices = base.deduplicate(update)
        step, new_m, new_v = adam_step(
            base.cast(values, dtype),
            base.cast(base.gather_rows(m, indices), dtype),
            base.cast(base.gather_rows(v, indices), dtype),
            *c,
        )
        parameter.scatter_sub(tf.IndexedSlices(base.cast(step, parameter.dtype), indices))
        m.scatter_update(tf.IndexedSlices(base.cast(new_m, m.dtype), indices))
        v.scatter_update(tf.IndexedSlices(base.cast(new_v, v.dtype), indices))
