"""SpectralNorm: divides a weight by an estimate of its largest singular value."""

import math
import numbers

import tensorflow as tf

from core import distribute, utils
from core.module import Module, once

# Floor on a squared norm before its inverse square root: far below any real norm
# squared, and finite when inverted in float32, so only an exactly zero vector is
# left unnormalised.
_TINY = 1e-30


def _normalize(x: tf.Tensor) -> tf.Tensor:
    """`x / ||x||`, or zeros for a zero `x`."""
    return x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x)), _TINY))


def _static_bool(value: bool | tf.Tensor) -> bool | tf.Tensor:
    """A flag as a Python bool when its value is known now (eager, or a constant), else the tensor."""
    if not tf.is_tensor(value):
        return value
    static = tf.get_static_value(value)
    return value if static is None else bool(static)


class SpectralNorm(Module):
    """Spectral normalisation of a weight by power iteration (Miyato et al., 2018, arXiv:1802.05957).

    The weight, of any shape [d_0, ..., d_{n-1}] with n >= 2, is viewed as the matrix W
    of shape [d_0 * ... * d_{n-2}, d_{n-1}] (inputs by outputs, for a dense or
    convolution kernel), and the module returns `weight / sigma`, where sigma
    estimates the spectral norm of W (its largest singular value), so the normalised
    weight has spectral norm about one.

    The estimate comes from power iteration on a unit vector `u` of size d_{n-1}, kept
    between calls. A training call runs `n_steps` steps `v = normalize(W u)`,
    `u = normalize(W^T v)` from the stored `u` and stores the result; every call then
    takes `sigma = v^T W u` with `v = normalize(W u)`, that is `||W u||`, so an
    inference call right after a training call on the same weight gives the same
    sigma. As in the paper, `u` and `v` are constants for differentiation: the gradient
    flows through `W` in `v^T W u` only. One step per training call suffices because
    the weight changes little between calls and `u` carries over (the paper's
    setting, `n_steps=1`). A step that meets a zero vector (a zero weight) keeps the
    old `u` rather than collapse it to zero for good.

    State (made with `core.distribute.state_variable`, aggregation "first": every
    replica computes the same values from the synchronised weight, and the first
    replica's are written everywhere):
      u: the power-iteration vector [d_{n-1}], a random unit vector at first.
      sigma: the estimate of the last training call (0 until the first one).
    Both are float32 for float16/bfloat16 weights, whose power iteration runs in
    float32; otherwise they have the weight's dtype.

    Args:
      n_steps: power-iteration steps per training call.
      eps: floor on sigma: the output is `weight / max(sigma, eps)`, so a weight that
        is (nearly) zero gives a bounded output and gradient, not inf or NaN. 1e-4
        leaves every weight whose spectral norm exceeds it untouched by the floor.
      name: module name.
    """

    def __init__(self, n_steps: int = 1, eps: float = 1e-4, name: str | None = None):
        super().__init__(name=name)
        n_steps = utils.positive_int(self, n_steps, "n_steps")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"{utils.describe(self)}: eps must be a positive number, got {eps!r}")
        self.n_steps = n_steps
        self.eps = float(eps)

    @once
    def _initialize(self, weight: tf.Tensor) -> None:
        utils.check_min_rank(self, weight, 2, what="weight", layout="[..., inputs, outputs]")
        utils.check_floating(self, weight, what="weight")
        if not weight.shape.is_fully_defined():
            raise ValueError(
                f"{utils.describe(self)}: the weight's shape must be fully known, got shape {weight.shape}"
            )
        self._shape = weight.shape
        self._matrix_shape = [math.prod(weight.shape[:-1]), weight.shape[-1]]
        self._dtype = tf.as_dtype(weight.dtype)
        self._work_dtype = tf.float64 if self._dtype == tf.float64 else tf.float32
        u = tf.random.normal([weight.shape[-1]], dtype=self._work_dtype)
        self.u = distribute.state_variable(_normalize(u), name="u", aggregation="first")
        self.sigma = distribute.state_variable(tf.zeros([], self._work_dtype), name="sigma", aggregation="first")

    def __call__(self, weight: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """Returns `weight / sigma`; in training, first advances the power iteration.

        Arguments, errors and state changes as `estimate`'s; the result has `weight`'s
        shape and dtype.
        """
        return weight / self.estimate(weight, is_training)

    def estimate(self, weight: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """Returns sigma, the divisor `__call__` applies (floored at `eps`), differentiable in `weight`.

        A layer linear in its weight can scale its output instead of its weight:
        `x @ (w / sigma)` equals `(x @ w) / sigma`, and the second never forms `w / sigma`
        or its gradient, passes over the whole weight that matter for large kernels on
        small batches (BigGAN's train step at 128x128, batch 2, one thread: its
        spectral norms took 1.2 s of op time dividing the weights, 0.3 s this way;
        `python -m benchmarks.profile_step biggan --preset paper --modes function`).

        Args:
          weight: a float tensor of rank >= 2, of the first call's shape and dtype.
          is_training: when true, `n_steps` power-iteration steps run from the stored
            `u`, and the new `u` and sigma are stored; when false, sigma comes from
            the stored `u` and the state does not change (a tensor flag writes the old
            values back). A Python bool or a boolean scalar tensor.

        Returns:
          A scalar of `weight`'s dtype.

        Raises:
          ValueError: on a shape other than the first call's.
          TypeError: on a dtype other than the first call's, or an `is_training` that is
            not a bool.
        """
        self._initialize(weight)
        if weight.dtype is not self._dtype or weight.shape != self._shape:
            self._check(weight)  # also admits a partly unknown shape compatible with the first
        w = tf.reshape(weight, self._matrix_shape)
        if self._work_dtype is not self._dtype:
            w = tf.cast(w, self._work_dtype)
        if is_training is not True and is_training is not False:
            is_training = _static_bool(utils.flag(self, is_training, "is_training"))
        if is_training is True:
            sigma = self._train(w)
        elif is_training is False:
            sigma = self._sigma(w, self.u)
        else:
            sigma = self._train_if(w, is_training)
        sigma = tf.maximum(sigma, self.eps)
        if self._work_dtype is not self._dtype:
            sigma = tf.cast(sigma, self._dtype)
        return sigma

    def _sigma(self, w: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        """`v^T W u` with `v = normalize(W u)`; differentiable in `w` only."""
        wu = tf.linalg.matvec(w, tf.stop_gradient(u))
        return tf.reduce_sum(tf.stop_gradient(_normalize(wu)) * wu)

    def _iterate(self, w: tf.Tensor) -> tf.Tensor:
        """`u` after `n_steps` power-iteration steps from the stored one (not stored)."""
        frozen = tf.stop_gradient(w)
        u = self.u.read_value()
        for _ in range(self.n_steps):
            v = _normalize(tf.linalg.matvec(frozen, u))
            new_u = tf.linalg.matvec(frozen, v, transpose_a=True)
            u = tf.where(tf.reduce_any(new_u != 0), _normalize(new_u), u)
        return u

    def _train(self, w: tf.Tensor) -> tf.Tensor:
        """Advances `u` by `n_steps` power-iteration steps; stores it and the new sigma."""
        u = self._iterate(w)
        sigma = self._sigma(w, u)
        self.u.assign(u)
        self.sigma.assign(tf.stop_gradient(sigma))
        return sigma

    def _train_if(self, w: tf.Tensor, is_training: tf.Tensor) -> tf.Tensor:
        """`_train` when the tensor `is_training` is true, else the inference sigma.

        Both are computed and one is selected, with no `tf.cond`: the writes to "first"
        variables synchronise replicas (a merge call), which MirroredStrategy does not
        allow in a branch of a conditional. When not training, the old values are
        written back, so nothing changes.
        """
        old_u = self.u.read_value()
        u = self._iterate(w)
        trained = self._sigma(w, u)
        sigma = tf.where(is_training, trained, self._sigma(w, old_u))
        self.u.assign(tf.where(is_training, u, old_u))
        self.sigma.assign(tf.where(is_training, tf.stop_gradient(trained), self.sigma.read_value()))
        return sigma

    def _check(self, weight: tf.Tensor) -> None:
        utils.check_dtype(self, weight, self._dtype, what="weight elements")
        if not weight.shape.is_compatible_with(self._shape):
            raise ValueError(
                f"{utils.describe(self)}: expected a weight of shape {self._shape} (the first call's), "
                f"got shape {weight.shape}"
            )
