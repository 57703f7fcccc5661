"""Dropout: zero a random fraction of the input while training (Srivastava et al., 2014)."""

import numbers
from typing import Sequence

import tensorflow as tf

from core import distribute, utils
from core.module import Module, once

# Named, not auto-selected: TensorFlow promises that Philox gives the same numbers from
# the same state on CPU, GPU and XLA.
_ALG = "philox"
_INT32_SPAN = 2.0**32


class Dropout(Module):
    """Sets each element to zero with probability `rate` while training, scaling the rest.

    Kept elements are multiplied by 1 / (1 - rate), so the expected output equals the input
    and nothing needs rescaling at test time (the "inverted dropout" of TensorFlow and
    Sonnet; Srivastava et al., 2014, JMLR 15). When not training, or when `rate` is 0, the
    input comes back unchanged.

    Randomness. The module owns a `tf.random.Generator`, whose state is the variable
    `rng_state`, created on the first call (training or not). With `seed` it starts from
    that seed; without, it is split off `tf.random.get_global_generator()` when the module
    is built, so `core.utils.set_seed` makes runs reproducible. Each training call draws
    uniform 32-bit integers from the generator (stateless Philox kernels keyed by its
    state) and keeps an element when its draw is above a threshold set by `rate`.
    Integer Philox draws are the same on CPU, GPU and XLA (float draws are not), so eager,
    `tf.function` and XLA give the same mask from the same state; the state is saved in
    checkpoints, and a restored module continues the same stream.

    Under a `tf.distribute` strategy (build it in the strategy's scope), every replica
    advances its own copy of the state by the same amount, so the copies stay identical,
    while TensorFlow mixes the replica id into each replica's seed, so replicas drop
    different elements. Call `core.utils.set_seed` (or `tf.random.get_global_generator()`)
    before entering a strategy's scope: TensorFlow creates the global generator on first
    use, and if that happens inside a scope it is tied to that strategy.

    Unlike Sonnet's `Dropout`, which calls the stateful `tf.nn.dropout`, masks here are
    reproducible; the distribution of masks is the same.

    Args:
      rate: the probability of zeroing each element, a float in [0, 1), or a scalar float
        tensor or variable (for a schedule; it is then not range-checked).
      noise_shape: the shape of the random mask, broadcast against the input; None
        entries take the input's size. Defaults to the input's shape (an independent
        draw for every element). [batch, 1, features] drops whole features of a sequence,
        say.
      seed: an integer seed of the module's own generator; see above.
      name: module name.

    Raises:
      ValueError: on a rate outside [0, 1) or a bad noise_shape.
      TypeError: on a rate or seed of the wrong type.
    """

    def __init__(
        self,
        rate: float | tf.Tensor,
        noise_shape: Sequence[int | None] | None = None,
        seed: int | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if isinstance(rate, numbers.Real) and not isinstance(rate, bool):
            if not 0 <= rate < 1:
                raise ValueError(f"{utils.describe(self)}: rate must be in [0, 1), got {rate!r}")
            rate = float(rate)
            # Keep an element when its uniform int32 draw is at least this threshold:
            # a fraction (2^32 - round(rate 2^32)) / 2^32 of draws, 1 - rate to within 2^-32.
            self._threshold = min(int(round(rate * _INT32_SPAN)) - 2**31, 2**31 - 1)
            self._static_rate = True
        elif tf.is_tensor(rate) or isinstance(rate, tf.Variable):
            if rate.shape.rank not in (None, 0) or not rate.dtype.is_floating:
                raise ValueError(f"{utils.describe(self)}: a tensor rate must be a float scalar, got {rate!r}")
            self._static_rate = False
        else:
            raise TypeError(f"{utils.describe(self)}: rate must be a float or a scalar tensor, got {rate!r}")
        if noise_shape is not None:
            noise_shape = tuple(noise_shape)
            if not all(d is None or (isinstance(d, int) and d >= 1) for d in noise_shape):
                raise ValueError(
                    f"{utils.describe(self)}: noise_shape entries must be positive ints or None, "
                    f"got {noise_shape!r}"
                )
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
            raise TypeError(f"{utils.describe(self)}: seed must be an int or None, got {seed!r}")
        self.rate = rate
        self.noise_shape = noise_shape
        self.seed = None if seed is None else int(seed)

    @once
    def _initialize(self, x: tf.Tensor) -> None:
        utils.check_floating(self, x)
        # Computed eagerly even when the first call is being traced, so the variable has
        # a concrete initial value and the global generator moves exactly once.
        with tf.init_scope():
            if self.seed is not None:
                state = tf.random.create_rng_state(self.seed, _ALG)
            else:
                # What `Generator.split` does, without making a throwaway variable: a new
                # key from the global stream, with the counter at zero.
                key = tf.random.get_global_generator().uniform_full_int([], tf.int64)
                state = tf.stack([tf.constant(0, tf.int64), tf.constant(0, tf.int64), key])
        # "none": each replica's generator advances its own copy by the same amount, so
        # the copies never differ and need no communication.
        self.rng_state = distribute.state_variable(state, name="rng_state", aggregation="none", dtype=tf.int64)
        # Kept out of attribute tracking: the checkpoint holds `rng_state` once, directly.
        self.__dict__["_generator"] = tf.random.Generator(state=self.rng_state, alg=_ALG)

    def __call__(self, x: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """Applies dropout to `x` when `is_training` is true; returns `x` otherwise.

        Args:
          x: a floating-point tensor of any shape.
          is_training: a Python bool or a scalar boolean tensor.

        Returns:
          A tensor like `x`.

        Raises:
          TypeError: if `x` is not floating point.
          ValueError: if `noise_shape` does not broadcast against `x`.
        """
        self._initialize(x)
        if not tf.is_tensor(is_training):
            return self._drop(x) if is_training else x
        return tf.cond(is_training, lambda: self._drop(x), lambda: tf.identity(x))

    def _drop(self, x: tf.Tensor) -> tf.Tensor:
        if self._static_rate:
            if self.rate == 0.0:
                return x
            threshold = self._threshold
            scale = 1.0 / (1.0 - self.rate)
        else:
            rate = tf.cast(self.rate, tf.float64)
            threshold = tf.cast(tf.minimum(tf.round(rate * _INT32_SPAN) - 2.0**31, 2.0**31 - 1), tf.int32)
            scale = tf.cast(1.0 / (1.0 - rate), x.dtype)
        # The generator's own draw runs the stateless Philox kernel on a key and counter
        # read from its state (mixing in the replica id under a strategy). It is identical
        # on every backend for integers, and a third of the eager cost of `make_seeds`
        # followed by a stateless op, whose seed scrambling alone takes a dozen small ops.
        bits = self._generator.uniform_full_int(self._mask_shape(x), tf.int32)
        # `where`, not a multiply by the mask, so dropped NaNs and infinities become zeros.
        return tf.where(bits >= threshold, x * scale, tf.zeros([], x.dtype))

    def _mask_shape(self, x: tf.Tensor) -> tf.Tensor | list[int]:
        shape = x.shape
        if self.noise_shape is None:
            return shape.as_list() if shape.is_fully_defined() else tf.shape(x)
        noise = self.noise_shape
        if shape.rank is not None:
            fits = len(noise) == shape.rank and all(
                n is None or n == 1 or d is None or n == d for n, d in zip(noise, shape)
            )
            if not fits:
                raise ValueError(
                    f"{utils.describe(self)}: noise_shape {list(noise)} does not broadcast against "
                    f"inputs of shape {shape}"
                )
        if all(n is not None for n in noise):
            return list(noise)
        dynamic = tf.shape(x)
        return tf.stack([dynamic[i] if n is None else n for i, n in enumerate(noise)])
