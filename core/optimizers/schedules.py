"""Learning-rate schedules: small callables from the step count to a value.

Pass one as an optimizer's learning rate (or another hyperparameter):

    opt = core.optimizers.Adam(core.optimizers.schedules.CosineDecay(1e-3, decay_steps=10_000))

The optimizer calls it with its step count, an int64 scalar tensor holding the number of
`apply` calls made before the current one (0 on the first). A schedule may also be called
directly with a Python int, to plot or log it. Every schedule returns a float32 scalar
tensor; the optimizer casts it to each parameter's dtype. Any other callable of the step
works as a schedule too.
"""

import abc
import math
import numbers
from collections.abc import Sequence

import tensorflow as tf

from core import utils

__all__ = [
    "Schedule",
    "ConstantWithLinearWarmup",
    "LinearDecay",
    "ExponentialDecay",
    "PiecewiseConstant",
    "CosineDecay",
]

StepLike = int | tf.Tensor


def _float_step(step: StepLike) -> tf.Tensor:
    return tf.cast(step, tf.float32)


def _check_number(who: str, name: str, value, low: float | None = None, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{who}: {name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{who}: {name} must be in [{low}, {high}], got {value!r}")


def _check_steps(who: str, name: str, value, minimum: int = 1) -> None:
    if not utils.is_int(value) or value < minimum:
        raise ValueError(f"{who}: {name} must be an int >= {minimum}, got {value!r}")


def _ramp(step: tf.Tensor, start: float, end: float, steps: int) -> tf.Tensor:
    """Goes linearly from `start` at step 0 to `end` at `steps`, and stays there."""
    fraction = tf.minimum(step, float(steps)) / float(steps)
    return start + (end - start) * fraction


class Schedule(abc.ABC):
    """Base class: `schedule(step)` returns the value at that step, a float32 scalar."""

    @abc.abstractmethod
    def __call__(self, step: StepLike) -> tf.Tensor:
        """Returns the value at `step` (the number of completed optimizer steps)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ConstantWithLinearWarmup(Schedule):
    """`value`, reached linearly from `initial_value` over the first `warmup_steps` steps.

    value(step) = initial_value + (value - initial_value) * min(step, warmup_steps) / warmup_steps

    Warm-up keeps the first, poorly-estimated adaptive steps small (Goyal et al., 2017,
    arXiv:1706.02677; Vaswani et al., 2017, arXiv:1706.03762).

    Args:
      value: the value after warm-up.
      warmup_steps: steps to reach it; 0 means no warm-up.
      initial_value: the value at step 0.
    """

    def __init__(self, value: float, warmup_steps: int, initial_value: float = 0.0):
        _check_number("ConstantWithLinearWarmup", "value", value)
        _check_steps("ConstantWithLinearWarmup", "warmup_steps", warmup_steps, minimum=0)
        _check_number("ConstantWithLinearWarmup", "initial_value", initial_value)
        self.value = value
        self.warmup_steps = warmup_steps
        self.initial_value = initial_value

    def __call__(self, step: StepLike) -> tf.Tensor:
        if self.warmup_steps == 0:
            return tf.constant(self.value, tf.float32)
        return _ramp(_float_step(step), self.initial_value, self.value, self.warmup_steps)


class LinearDecay(Schedule):
    """Goes linearly from `initial_value` to `final_value` over `decay_steps`, then stays.

    value(step) = initial_value + (final_value - initial_value) * min(step, decay_steps) / decay_steps

    GQN anneals its learning rate this way (Eslami et al., 2018, "Neural scene
    representation and rendering", Science; supplementary materials).

    Args:
      initial_value: the value at step 0.
      final_value: the value from `decay_steps` on.
      decay_steps: steps to get there, >= 1.
    """

    def __init__(self, initial_value: float, final_value: float, decay_steps: int):
        _check_number("LinearDecay", "initial_value", initial_value)
        _check_number("LinearDecay", "final_value", final_value)
        _check_steps("LinearDecay", "decay_steps", decay_steps)
        self.initial_value = initial_value
        self.final_value = final_value
        self.decay_steps = decay_steps

    def __call__(self, step: StepLike) -> tf.Tensor:
        return _ramp(_float_step(step), self.initial_value, self.final_value, self.decay_steps)


class ExponentialDecay(Schedule):
    """Multiplies `initial_value` by `decay_rate` every `decay_steps` steps.

    value(step) = initial_value * decay_rate ** (step / decay_steps), with the exponent
    rounded down when `staircase` (so the value changes in jumps).

    Args:
      initial_value: the value at step 0.
      decay_steps: steps per factor of `decay_rate`, >= 1.
      decay_rate: the factor, > 0.
      staircase: whether to decay in whole jumps.
    """

    def __init__(self, initial_value: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        _check_number("ExponentialDecay", "initial_value", initial_value)
        _check_steps("ExponentialDecay", "decay_steps", decay_steps)
        _check_number("ExponentialDecay", "decay_rate", decay_rate)
        if decay_rate <= 0:
            raise ValueError(f"ExponentialDecay: decay_rate must be > 0, got {decay_rate!r}")
        if not isinstance(staircase, bool):
            raise TypeError(f"ExponentialDecay: staircase must be a bool, got {staircase!r}")
        self.initial_value = initial_value
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase

    def __call__(self, step: StepLike) -> tf.Tensor:
        exponent = _float_step(step) / float(self.decay_steps)
        if self.staircase:
            exponent = tf.floor(exponent)
        return self.initial_value * tf.pow(tf.constant(self.decay_rate, tf.float32), exponent)


class PiecewiseConstant(Schedule):
    """Constant between boundaries: `values[i]` while `boundaries[i-1] < step <= boundaries[i]`.

    So `values[0]` up to and including step `boundaries[0]`, and `values[-1]` after
    `boundaries[-1]` (the convention of TensorFlow's `piecewise_constant`).

    Args:
      boundaries: strictly increasing step numbers (ints).
      values: one more value than boundaries.
    """

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        boundaries, values = list(boundaries), list(values)
        for b in boundaries:
            _check_steps("PiecewiseConstant", "each boundary", b, minimum=0)
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"PiecewiseConstant: boundaries must increase strictly, got {boundaries}")
        for v in values:
            _check_number("PiecewiseConstant", "each value", v)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"PiecewiseConstant: needs one more value than boundaries, got {len(values)} values "
                f"for {len(boundaries)} boundaries"
            )
        self.boundaries = boundaries
        self.values = values

    def __call__(self, step: StepLike) -> tf.Tensor:
        step = tf.cast(step, tf.int64)
        passed = tf.reduce_sum(tf.cast(step > tf.constant(self.boundaries, tf.int64), tf.int32))
        return tf.gather(tf.constant(self.values, tf.float32), passed)


class CosineDecay(Schedule):
    """Half a cosine from `initial_value` down to `alpha * initial_value`, after a warm-up.

    For step >= warmup_steps, with s = min(step - warmup_steps, decay_steps) / decay_steps:
        value(step) = initial_value * ((1 - alpha) * (1 + cos(pi * s)) / 2 + alpha)
    and during warm-up it rises linearly from 0: initial_value * step / warmup_steps.
    (Loshchilov & Hutter, 2017, arXiv:1608.03983, without restarts.)

    Args:
      initial_value: the value at the end of warm-up (at step 0 without warm-up).
      decay_steps: length of the cosine, >= 1; the value stays at its floor afterwards.
      alpha: the floor, as a fraction of `initial_value`, in [0, 1].
      warmup_steps: steps of linear warm-up before the decay, >= 0.
    """

    def __init__(self, initial_value: float, decay_steps: int, alpha: float = 0.0, warmup_steps: int = 0):
        _check_number("CosineDecay", "initial_value", initial_value)
        _check_steps("CosineDecay", "decay_steps", decay_steps)
        _check_number("CosineDecay", "alpha", alpha, low=0.0, high=1.0)
        _check_steps("CosineDecay", "warmup_steps", warmup_steps, minimum=0)
        self.initial_value = initial_value
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.warmup_steps = warmup_steps

    def __call__(self, step: StepLike) -> tf.Tensor:
        step = _float_step(step)
        s = tf.clip_by_value(step - self.warmup_steps, 0.0, float(self.decay_steps)) / float(self.decay_steps)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * s))
        decayed = self.initial_value * ((1.0 - self.alpha) * cosine + self.alpha)
        if self.warmup_steps == 0:
            return decayed
        warm = self.initial_value * step / float(self.warmup_steps)
        return tf.where(step < self.warmup_steps, warm, decayed)
