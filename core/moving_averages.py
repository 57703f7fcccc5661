"""ExponentialMovingAverage: a debiased running average of a tensor."""

import numbers

import tensorflow as tf

from core import distribute, utils
from core.module import Module, once


class ExponentialMovingAverage(Module):
    """Keeps an exponential moving average of the values passed to `update`.

    With `zero_debias` (the default) a hidden average starts at zero and the reported
    average divides out the weight still held by that zero start, as Adam does for its
    moments (Kingma & Ba, 2014, arXiv:1412.6980, section 3):

        counter_t = counter_{t-1} + 1
        hidden_t  = hidden_{t-1} - (hidden_{t-1} - value_t) * (1 - decay)
        average_t = hidden_t / (1 - decay ** counter_t)

    so the first average equals the first value, and no value is favoured. Without
    `zero_debias`, `average_t = hidden_t` (biased towards zero early on). With
    `warmup_length = k`, the first k updates copy the value into the average
    (decay 0), and decay applies from then on.

    The variables are `counter` (int64, made with the module), `hidden` and `average`
    (made from the first value, with its shape; `average` has its dtype). For float16
    and bfloat16 values `hidden` is float32 and the arithmetic runs in float32, and
    only the average is rounded to the values' dtype: in bfloat16 a decay of 0.999 is
    1.0 (the debiasing would divide by zero), and a bfloat16 `hidden` would stop moving
    once its steps, (1 - decay) times the values, fall below its resolution (a constant
    1 averaged to 0.26 after 3000 steps). Float32 and float64 values keep every
    variable in their dtype, as Sonnet does for all dtypes.

    Under a `tf.distribute` strategy `hidden` and `average` use the "mean" policy of
    `core.distribute` (the writes of all replicas are averaged, so the average follows
    the mean of the replicas' values) and `counter` the "first" policy.

    Args:
      decay: weight of the past, in [0, 1): close to 1 averages over many values,
        close to 0 tracks the latest. A float, or a scalar tensor or variable.
      name: module name.
      zero_debias: keyword only (Sonnet's positional order is `decay, name`): whether
        to divide out the zero start (see above).
      warmup_length: keyword only: number of first updates that copy the value
        instead of averaging it; needs `zero_debias=False`, as there is no zero start
        to undo.

    Raises:
      ValueError: for a decay outside [0, 1), a negative `warmup_length`, or a
        warm-up together with `zero_debias`.
    """

    def __init__(
        self,
        decay: float | tf.Tensor,
        name: str | None = None,
        *,
        zero_debias: bool = True,
        warmup_length: int = 0,
    ):
        super().__init__(name=name)
        if isinstance(decay, bool) or not (isinstance(decay, numbers.Real) or tf.is_tensor(decay)):
            raise TypeError(f"{utils.describe(self)}: decay must be a number or a scalar tensor, got {decay!r}")
        if isinstance(decay, numbers.Real):
            if not 0.0 <= decay < 1.0:
                raise ValueError(f"{utils.describe(self)}: decay must be in [0, 1), got {decay!r}")
            decay = float(decay)
        if not utils.is_int(warmup_length) or warmup_length < 0:
            raise ValueError(f"{utils.describe(self)}: warmup_length must be a non-negative int, got {warmup_length!r}")
        if warmup_length and zero_debias:
            raise ValueError(
                f"{utils.describe(self)}: warmup_length={warmup_length} starts the average from a real value, "
                "so there is no zero start to debias; pass zero_debias=False"
            )
        self._decay = decay
        self.zero_debias = zero_debias
        self.warmup_length = int(warmup_length)
        # The attribute names `_counter`, `_hidden` and `average` are Sonnet 2's, so
        # checkpoints of either library map onto the other.
        self._counter = distribute.state_variable(
            tf.constant(-self.warmup_length, tf.int64), name="counter", aggregation="first"
        )
        self._hidden = None
        self.average = None

    @property
    def decay(self) -> float | tf.Tensor:
        return self._decay

    @property
    def counter(self) -> tf.Variable:
        """The number of updates so far (minus `warmup_length`), an int64 variable."""
        return self._counter

    @once
    def initialize(self, value: tf.Tensor) -> None:
        """Creates `hidden` and `average`, zeros of `value`'s shape (see the class docstring for dtypes).

        `update` calls it; call it yourself to have the variables before the first update.
        """
        value = tf.convert_to_tensor(value)
        utils.check_floating(self, value, what="values")
        shape = value.shape
        if not shape.is_fully_defined():
            raise ValueError(f"{utils.describe(self)}: the shape of the values must be fully known, got shape {shape}")
        compute = tf.float64 if value.dtype == tf.float64 else tf.float32
        self._hidden = distribute.state_variable(tf.zeros(shape, compute), name="hidden", aggregation="mean")
        self.average = distribute.state_variable(tf.zeros(shape, value.dtype), name="average", aggregation="mean")

    def update(self, value: tf.Tensor, enabled: tf.Tensor | None = None) -> None:
        """Folds `value` into the average.

        Args:
          value: of the average's shape (the first value's), or of the same size in a
            shape that broadcasts to it (a [channels] value for a [1, 1, 1, channels]
            average). Of the average's dtype or, for a float16 or bfloat16 average,
            float32, which is rounded only when the average is written.
          enabled: a boolean scalar tensor that skips the update when false, without
            control flow (a replica context allows no synchronised write in a branch of
            a conditional), or None.

        Raises:
          TypeError: for a value of another dtype.
          ValueError: for a value of another shape.
        """
        if not isinstance(value, tf.Tensor):
            value = tf.convert_to_tensor(value)
        self.initialize(value)
        average = self.average
        # One cheap test on the hot path; the detailed checks run only when it fails.
        if value.dtype is not average.dtype or value.shape != average.shape:
            self._check(value)
        self._step(value, enabled)

    def _check(self, value: tf.Tensor) -> None:
        if value.dtype != self._hidden.dtype:
            utils.check_dtype(self, value, self.average.dtype, what="values")
        shape, expected = value.shape, self.average.shape
        if not _broadcasts_to(shape, expected):
            raise ValueError(
                f"{utils.describe(self)}: expected values of shape {expected} (the shape of the "
                f"first value), got shape {shape}"
            )

    def _step(self, value: tf.Tensor, enabled: tf.Tensor | None) -> None:
        """The update of `update`, after its checks."""
        compute = self._hidden.dtype
        if value.dtype != compute:
            value = tf.cast(value, compute)
        self._counter.assign_add(1 if enabled is None else tf.cast(enabled, tf.int64))
        counter = tf.cast(self._counter, compute)
        if isinstance(self._decay, float):
            # 1 - decay in double precision before rounding, as Sonnet.
            decay, rate = tf.constant(self._decay, compute), 1.0 - self._decay
        else:
            decay = tf.cast(self._decay, compute)
            rate = 1.0 - decay
        if self.warmup_length:
            decay = tf.where(counter <= 0, tf.zeros([], compute), decay)
            rate = 1.0 - decay
        delta = (self._hidden - value) * rate
        if enabled is not None:
            delta = tf.where(enabled, delta, tf.zeros_like(delta))
        self._hidden.assign_sub(delta)
        average = self._hidden / (1.0 - tf.pow(decay, counter)) if self.zero_debias else self._hidden.read_value()
        if average.dtype != self.average.dtype:
            average = tf.cast(average, self.average.dtype)
        if enabled is not None:
            average = tf.where(enabled, average, self.average)
        self.average.assign(average)

    @property
    def value(self) -> tf.Tensor:
        """The current average (zeros before the first update)."""
        if self.average is None:
            raise RuntimeError(
                f"{utils.describe(self)}: there is no average yet; call update(value) or initialize(value) first"
            )
        return self.average.read_value()

    def reset(self) -> None:
        """Forgets every value so far: the state returns to its initial value."""
        self._counter.assign(tf.constant(-self.warmup_length, tf.int64))
        if self.average is not None:
            self._hidden.assign(tf.zeros_like(self._hidden))
            self.average.assign(tf.zeros_like(self.average))

    def __call__(self, value: tf.Tensor) -> tf.Tensor:
        """Updates the average with `value` and returns the new average."""
        self.update(value)
        return self.average.read_value()


def _broadcasts_to(shape: tf.TensorShape, target: tf.TensorShape) -> bool:
    """Whether values of the known `shape` are those of `target` with axes of size 1 dropped."""
    if not shape.is_fully_defined() or shape.rank > target.rank or shape.num_elements() != target.num_elements():
        return False
    return all(d in (1, t) for d, t in zip(reversed(shape.as_list()), reversed(target.as_list())))
