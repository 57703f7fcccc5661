"""Dropout: zero a random fraction of the input while training (Srivastava et al., 2014)."""

import functools
import numbers
from collections.abc import Sequence

import tensorflow as tf

from core import distribute, utils
from core.module import Module, once

# Named, not auto-selected: TensorFlow promises that Philox gives the same numbers from
# the same state on CPU, GPU and XLA.
_ALG = "philox"
_PHILOX = tf.random.Algorithm.PHILOX.value
_INT32_SPAN = 2.0**32


class Dropout(Module):
    """Sets each element to zero with probability `rate` while training, scaling the rest.

    Kept elements are multiplied by 1 / (1 - rate), so the expected output equals the input
    and nothing needs rescaling at test time (the "inverted dropout" of TensorFlow and
    Sonnet; Srivastava et al., 2014, JMLR 15). When not training, or when `rate` is 0, the
    input comes back unchanged.

    Randomness. The module's random state is the variable `rng_state` (the state of a
    Philox `tf.random.Generator`: a 128-bit counter and a 64-bit key), created on the
    first call (training or not). With `seed` it starts from that seed; without, its key
    is drawn from `tf.random.get_global_generator()` when the module is built, so
    `core.utils.set_seed` makes runs reproducible. Each training call advances the
    counter by one fixed step, whatever the input's size, and hashes the old key and
    counter into a fresh Philox key (what `Generator.make_seeds` does); the mask's
    uniform 32-bit integers come from the stateless Philox kernel under that key, and
    an element is kept when its draw is at least a threshold set by `rate`. Integer
    Philox draws are the same on CPU, GPU and XLA (float draws are not), so eager,
    `tf.function` and XLA give the same mask from the same state; the state is saved in
    checkpoints, and a restored module continues the same stream.

    Under a `tf.distribute` strategy (build it in the strategy's scope and call it
    inside `strategy.run`), every replica advances its own copy of the state by the same
    fixed step, so the copies stay identical even when the replicas' batches differ in
    size, while each replica draws its mask from its own block of counters (the
    replica id is the counter's high word), so replicas drop different elements.
    Replica 0 draws what a single device would. Call `core.utils.set_seed` (or
    `tf.random.get_global_generator()`) before entering a strategy's scope: TensorFlow
    creates the global generator on first use, and if that happens inside a scope it is
    tied to that strategy.

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
            if self.seed is not None:
                state = tf.random.create_rng_state(self.seed, _ALG)
            else:
                # What `Generator.split` does, without making a throwaway variable: a new
                # key from the global stream, with the counter at zero.
                key = tf.random.get_global_generator().uniform_full_int([], tf.int64)
                state = tf.stack([tf.constant(0, tf.int64), tf.constant(0, tf.int64), key])
        # "none": each replica advances its own copy by the same fixed step per call, so
        # the copies never differ and need no communication.
        self.rng_state = distribute.state_variable(state, name="rng_state", aggregation="none", dtype=tf.int64)

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
        if is_training is True:
            return self._drop(x)
        if is_training is False:
            return x
        is_training = utils.flag(self, is_training, "is_training")
        if isinstance(is_training, bool):
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
        keep = tf.raw_ops.GreaterEqual(x=self._random_bits(self._mask_shape(x)), y=threshold)
        # `where`, not a multiply by the mask, so dropped NaNs and infinities become zeros.
        # (Raw ops here and below: the same kernels as `tf.where` and `*`, without the
        # Python dispatch layers that would double the eager cost of a small call.)
        return tf.raw_ops.SelectV2(condition=keep, t=tf.raw_ops.Mul(x=x, y=scale), e=0.0)

    def _random_bits(self, shape: tf.Tensor) -> tf.Tensor:
        """Uniform int32s of `shape`; advances `rng_state` by one fixed step, whatever `shape` is.

        `Generator.uniform_full_int` would advance the state by the size of the draw, so
        replicas with batches of different sizes would drift apart; the stateless
        `tf.random` functions with an explicit algorithm scramble their seed in a dozen
        small ops. These five ops are the whole of it, and XLA compiles each to the same
        numbers as the CPU kernels.
        """
        counter = _host_constant((0, 0), tf.uint64)
        if tf.distribute.has_strategy():
            counter = self._replica_counter()
        # The state before the skip: the counter (two words), then the key.
        state = tf.raw_ops.RngReadAndSkip(
            resource=self.rng_state.handle, alg=_PHILOX, delta=_host_constant(1, tf.uint64)
        )
        old_counter, old_key = tf.raw_ops.SplitV(
            value=tf.bitcast(state, tf.uint64),
            size_splits=_host_constant((2, 1), tf.int32),
            axis=_host_constant(0, tf.int32),
            num_split=2,
        )
        # A fresh key per call, hashed from the old key and counter: the next call's
        # counter differs, so its key does too, and masks of any size never reuse one
        # another's Philox blocks.
        key = tf.raw_ops.StatelessRandomUniformFullIntV2(
            shape=_host_constant((1,), tf.int32), key=old_key, counter=old_counter, alg=_PHILOX, dtype=tf.uint64
        )
        return tf.raw_ops.StatelessRandomUniformFullIntV2(
            shape=shape, key=key, counter=counter, alg=_PHILOX, dtype=tf.int32
        )

    def _replica_counter(self) -> tf.Tensor:
        """The first Philox counter of this replica's draw: the replica id in its high word."""
        context = tf.distribute.get_replica_context()
        if context is None:
            raise RuntimeError(
                f"{utils.describe(self)}: a training call under a tf.distribute strategy must run inside "
                "strategy.run, where each replica advances its own copy of the random state"
            )
        replica = context.replica_id_in_sync_group
        static = tf.get_static_value(replica)
        if static is not None:
            return _host_constant((0, int(static)), tf.uint64)
        return tf.stack([tf.constant(0, tf.uint64), tf.cast(replica, tf.uint64)])

    def _mask_shape(self, x: tf.Tensor) -> tf.Tensor:
        shape = x.shape
        if self.noise_shape is None:
            if shape.is_fully_defined():
                return _host_constant(tuple(shape.as_list()), tf.int32)
            return tf.shape(x)
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
            return _host_constant(noise, tf.int32)
        dynamic = tf.shape(x)
        return tf.stack([dynamic[i] if n is None else n for i, n in enumerate(noise)])


@functools.lru_cache(maxsize=256)
def _host_constant(value: int | tuple[int, ...], dtype: tf.DType) -> tf.Tensor:
    """A small eager constant, made once.

    Raw ops convert Python lists to tensors on a slow path (tens of microseconds each in
    eager mode); a traced function captures a small eager tensor as a constant, so XLA
    still sees a compile-time shape.
    """
    with tf.init_scope(), tf.device("/cpu:0"):
        return tf.constant(value, dtype)
