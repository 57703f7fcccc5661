"""Dropout: zero a random fraction of the input while training (Srivastava et al., 2014)."""

import numbers
from collections.abc import Sequence

import tensorflow as tf

from core import distribute, utils
from core.module import Module, once

# Named, not auto-selected: TensorFlow promises that Philox gives the same numbers from
# the same state on CPU, GPU and XLA.
_ALG = "philox"
_PHILOX = tf.random.Algorithm.PHILOX.value
_raw = tf.raw_ops


def _threshold(rate: float | tf.Tensor) -> int | tf.Tensor:
    """The int32 at or above which a uniform int32 draw keeps its element: a fraction
    1 - rate of the draws, to within 2^-32."""
    if isinstance(rate, float):
        return min(int(round(rate * 2.0**32)) - 2**31, 2**31 - 1)
    return tf.cast(tf.minimum(tf.round(rate * 2.0**32) - 2.0**31, 2.0**31 - 1), tf.int32)


class Dropout(Module):
    """Sets each element to zero with probability `rate` while training, scaling the rest.

    Kept elements are multiplied by 1 / (1 - rate), so the expected output equals the input
    and nothing needs rescaling at test time (the "inverted dropout" of TensorFlow and
    Sonnet; Srivastava et al., 2014, JMLR 15). When not training, or when `rate` is 0, the
    input comes back unchanged.

    Randomness. The module's random state is the variable `rng_state`, the state of a
    Philox `tf.random.Generator` (a 128-bit counter and a 64-bit key; a
    `tf.random.Generator(state=module.rng_state, alg="philox")` reads the same stream),
    made on the first call (training or not) from `seed` or, without one, from a seed of
    `tf.random.get_global_generator()`, so that `core.utils.set_seed` makes runs
    reproducible. Each training call moves the state by one fixed step, whatever the
    input's size, hashes its key and counter into a fresh key (as `Generator.make_seeds`
    does), and draws the mask's integers with the stateless Philox op under that key.
    Integer Philox draws are the same on CPU, GPU and XLA (float draws are not), so
    eager, `tf.function` and XLA give the same mask from the same state; the state is
    saved in checkpoints, and a restored module continues the same stream.

    Under a `tf.distribute` strategy (build it in the strategy's scope and call it inside
    `strategy.run`), every replica moves its own copy of the state by that same step, so
    the copies stay identical even when the replicas' batches differ in size, while each
    replica draws from its own block of counters (the replica id is the counter's high
    word), so replicas drop different elements. Replica 0 draws what one device would.
    Call `core.utils.set_seed` (or `tf.random.get_global_generator()`) before entering a
    strategy's scope: TensorFlow creates the global generator on first use, and if that
    happens inside a scope it is tied to that strategy.

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
        elif tf.is_tensor(rate) or isinstance(rate, tf.Variable):
            if rate.shape.rank not in (None, 0) or not rate.dtype.is_floating:
                raise ValueError(f"{utils.describe(self)}: a tensor rate must be a float scalar, got {rate!r}")
        else:
            raise TypeError(f"{utils.describe(self)}: rate must be a float or a scalar tensor, got {rate!r}")
        if noise_shape is not None:
            noise_shape = tuple(noise_shape)
            if not all(d is None or (utils.is_int(d) and d >= 1) for d in noise_shape):
                raise ValueError(
                    f"{utils.describe(self)}: noise_shape entries must be positive ints or None, got {noise_shape!r}"
                )
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        if seed is not None and not utils.is_int(seed):
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
            seed = self.seed
            if seed is None:
                seed = tf.random.get_global_generator().make_seeds(1)[0, 0]
            state = tf.random.create_rng_state(seed, _ALG)
        # "none": each replica moves its own copy by the same step per call, so the copies
        # never differ and need no communication.
        self.rng_state = distribute.state_variable(state, name="rng_state", aggregation="none", dtype=tf.int64)
        # Constants of every call, made once: raw ops convert Python values slowly when eager.
        with tf.init_scope():
            self._one_step = tf.constant(1, tf.uint64)
            self._split, self._axis = tf.constant([2, 1]), tf.constant(0)
            self._one_key = tf.constant([1])
            self._first_block = tf.zeros([2], tf.uint64)  # where one device draws
            if isinstance(self.rate, float) and self.rate > 0.0:
                self._threshold = tf.constant(_threshold(self.rate))
                self._scale, self._zero = tf.constant(1.0 / (1.0 - self.rate), x.dtype), tf.zeros([], x.dtype)

    def __call__(self, x: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """Applies dropout to `x` when `is_training` is true; returns `x` otherwise.

        Args:
          x: a floating-point tensor of any shape.
          is_training: a Python bool or a scalar boolean tensor.

        Returns:
          A tensor like `x`.

        Raises:
          TypeError: if `x` is not floating point, or `is_training` is not a bool.
          ValueError: if `noise_shape` does not broadcast against `x`.
          RuntimeError: on a training call under a strategy outside `strategy.run`.
        """
        self._initialize(x)
        if is_training is not True and is_training is not False:
            is_training = utils.flag(self, is_training, "is_training")
            if tf.is_tensor(is_training):
                return tf.cond(is_training, lambda: self._drop(x), lambda: tf.identity(x))
        return self._drop(x) if is_training else x

    def _drop(self, x: tf.Tensor) -> tf.Tensor:
        if isinstance(self.rate, float):
            if self.rate == 0.0:
                return x
            threshold, scale, zero = self._threshold, self._scale, self._zero
            if x.dtype != zero.dtype:  # another dtype than the first call's
                scale, zero = tf.cast(scale, x.dtype), tf.zeros([], x.dtype)
        else:
            rate = tf.cast(self.rate, tf.float64)
            threshold, scale, zero = _threshold(rate), tf.cast(1.0 / (1.0 - rate), x.dtype), tf.zeros([], x.dtype)
        keep = _raw.GreaterEqual(x=self._random_ints(self._mask_shape(x)), y=threshold)
        # `where`, not a product with the mask, so that dropped NaNs and infinities become zeros.
        return _raw.SelectV2(condition=keep, t=_raw.Mul(x=x, y=scale), e=zero)

    def _random_ints(self, shape: tf.Tensor) -> tf.Tensor:
        """Uniform int32s of `shape`; moves the generator's state by one fixed step, whatever
        `shape` is.

        What `Generator.make_seeds` and a stateless draw under its seed compute, with the
        same Philox kernels on the same state; through the `tf.random` functions an eager
        call costs three times Sonnet's whole dropout, hence raw ops on constants made
        once (`_initialize`).
        """
        counter = self._first_block
        if tf.distribute.has_strategy():
            context = tf.distribute.get_replica_context()
            if context is None:
                raise RuntimeError(
                    f"{utils.describe(self)}: a training call under a tf.distribute strategy must run inside "
                    "strategy.run, where each replica moves its own copy of the random state"
                )
            # Each replica draws from its own block of counters: the replica id in the high word.
            counter = tf.cast(tf.stack([0, context.replica_id_in_sync_group]), tf.uint64)
        # The state before the step: a 128-bit counter (two words), then the key.
        state = _raw.RngReadAndSkip(resource=self.rng_state.handle, alg=_PHILOX, delta=self._one_step)
        old_counter, key = _raw.SplitV(
            value=_raw.Bitcast(input=state, type=tf.uint64), size_splits=self._split, axis=self._axis, num_split=2
        )
        # A fresh key each call, hashed from the old key and counter (as `make_seeds` does),
        # so that masks of any size never reuse one another's Philox blocks.
        key = _raw.StatelessRandomUniformFullIntV2(
            shape=self._one_key, key=key, counter=old_counter, alg=_PHILOX, dtype=tf.uint64
        )
        return _raw.StatelessRandomUniformFullIntV2(shape=shape, key=key, counter=counter, alg=_PHILOX, dtype=tf.int32)

    def _mask_shape(self, x: tf.Tensor) -> tf.Tensor:
        if self.noise_shape is None:
            return _raw.Shape(input=x)
        noise, shape = self.noise_shape, x.shape
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
            return tf.constant(noise)
        dynamic = tf.shape(x)
        return tf.stack([dynamic[i] if n is None else n for i, n in enumerate(noise)])
