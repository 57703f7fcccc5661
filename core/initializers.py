"""Initializers: callables `init(shape, dtype) -> tf.Tensor` that give a variable its first value.

Random initializers take an optional `seed`. With a seed, the op-level seed is fixed; together
with `core.utils.set_seed` (which fixes the global seed) the values are reproducible.
"""

import abc
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

ShapeLike = Sequence[int] | tf.TensorShape

__all__ = [
    "Initializer",
    "Zeros",
    "Ones",
    "Constant",
    "RandomUniform",
    "RandomNormal",
    "TruncatedNormal",
    "Identity",
    "Orthogonal",
    "VarianceScaling",
    "default_w_init",
]

# Standard deviation of a unit normal truncated to [-2, 2], the range that
# `tf.random.truncated_normal` keeps; dividing by it restores the asked-for spread.
_TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


def _as_shape(shape: ShapeLike) -> list[int]:
    dims = tf.TensorShape(shape).as_list()
    if any(d is None or d < 0 for d in dims):
        raise ValueError(f"an initializer needs a fully known, non-negative shape, got {shape}")
    return dims


def _floating(dtype: tf.DType, who: str) -> tf.DType:
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(f"{who} draws floating-point values; it cannot make dtype {dtype.name}")
    return dtype


class Initializer(abc.ABC):
    """Base class: subclasses return a tensor of the given shape and dtype."""

    @abc.abstractmethod
    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        """Returns the initial value."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if v is not None)
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        return tf.zeros(_as_shape(shape), dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        return tf.ones(_as_shape(shape), dtype)


class Constant(Initializer):
    """Every element equal to `value`."""

    def __init__(self, value: float | int):
        if not np.isscalar(value):
            raise TypeError(f"Constant takes a scalar value, got {type(value).__name__}")
        self.value = value

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        return tf.fill(_as_shape(shape), tf.constant(self.value, dtype=dtype))


class RandomUniform(Initializer):
    """Uniform on [minval, maxval)."""

    def __init__(self, minval: float = 0.0, maxval: float = 1.0, seed: int | None = None):
        if not minval < maxval:
            raise ValueError(f"RandomUniform needs minval < maxval, got {minval} and {maxval}")
        self.minval = minval
        self.maxval = maxval
        self.seed = seed

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        dtype = _floating(dtype, "RandomUniform")
        return tf.random.uniform(_as_shape(shape), self.minval, self.maxval, dtype, seed=self.seed)


class RandomNormal(Initializer):
    """Normal with the given mean and standard deviation."""

    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None):
        if stddev < 0:
            raise ValueError(f"RandomNormal needs stddev >= 0, got {stddev}")
        self.mean = mean
        self.stddev = stddev
        self.seed = seed

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        dtype = _floating(dtype, "RandomNormal")
        return tf.random.normal(_as_shape(shape), self.mean, self.stddev, dtype, seed=self.seed)


class TruncatedNormal(Initializer):
    """Normal cut at two standard deviations from the mean and redrawn outside them.

    `stddev` is that of the normal before truncation, as in `tf.random.truncated_normal`.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None):
        if stddev < 0:
            raise ValueError(f"TruncatedNormal needs stddev >= 0, got {stddev}")
        self.mean = mean
        self.stddev = stddev
        self.seed = seed

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        dtype = _floating(dtype, "TruncatedNormal")
        return tf.random.truncated_normal(_as_shape(shape), self.mean, self.stddev, dtype, seed=self.seed)


class Identity(Initializer):
    """`gain` times the identity matrix, for square 2-D shapes (a recurrent weight, say)."""

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        dims = _as_shape(shape)
        if len(dims) != 2:
            raise ValueError(f"Identity initializes 2-D shapes only, got {dims}")
        return self.gain * tf.eye(dims[0], dims[1], dtype=dtype)


class Orthogonal(Initializer):
    """A random orthogonal matrix (Saxe et al., 2014), times `gain`.

    Shapes of rank above two are treated as a matrix of `prod(shape[:-1])` rows and
    `shape[-1]` columns. The rows (or the columns, whichever are fewer) are orthonormal.
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        self.gain = gain
        self.seed = seed

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        dtype = _floating(dtype, "Orthogonal")
        dims = _as_shape(shape)
        if len(dims) < 2:
            raise ValueError(f"Orthogonal needs a shape of rank >= 2, got {dims}")
        rows, cols = math.prod(dims[:-1]), dims[-1]
        tall = (max(rows, cols), min(rows, cols))
        # QR of a Gaussian matrix in float32 at least (QR has no half-precision kernel).
        work = tf.float64 if dtype == tf.float64 else tf.float32
        q, r = tf.linalg.qr(tf.random.normal(tall, dtype=work, seed=self.seed))
        # Fix the signs so that Q is uniformly (Haar) distributed, not biased by QR.
        q *= tf.sign(tf.linalg.diag_part(r))
        if rows < cols:
            q = tf.transpose(q)
        return tf.cast(self.gain * tf.reshape(q, dims), dtype)


class VarianceScaling(Initializer):
    """Variance `scale / n`, where `n` is the fan in, the fan out or their average.

    `distribution` is "truncated_normal" (the spread is corrected for the truncation),
    "normal" (also spelled "untruncated_normal") or "uniform". With scale=2 and fan_in it is He et al. (2015);
    with scale=1 and fan_avg, Glorot & Bengio (2010).
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "normal", "untruncated_normal", "uniform")

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
    ):
        if scale <= 0:
            raise ValueError(f"VarianceScaling needs scale > 0, got {scale}")
        distribution = distribution.lower()
        if mode not in self._MODES:
            raise ValueError(f"VarianceScaling mode must be one of {self._MODES}, got {mode!r}")
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"VarianceScaling distribution must be one of {self._DISTRIBUTIONS}, got {distribution!r}")
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.seed = seed

    def __call__(self, shape: ShapeLike, dtype: tf.DType) -> tf.Tensor:
        dtype = _floating(dtype, "VarianceScaling")
        dims = _as_shape(shape)
        fan_in, fan_out = fans(dims)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / _TRUNCATED_NORMAL_STDDEV
            return tf.random.truncated_normal(dims, 0.0, stddev, dtype, seed=self.seed)
        if self.distribution in ("normal", "untruncated_normal"):
            return tf.random.normal(dims, 0.0, math.sqrt(variance), dtype, seed=self.seed)
        limit = math.sqrt(3.0 * variance)  # a uniform on [-a, a] has variance a^2 / 3
        return tf.random.uniform(dims, -limit, limit, dtype, seed=self.seed)


def fans(shape: Sequence[int]) -> tuple[float, float]:
    """Returns (fan_in, fan_out) of a weight shape.

    A convolution kernel [*spatial, in, out] has fans in*receptive and out*receptive,
    where receptive is the product of the spatial sizes.
    """
    dims = list(shape)
    if not dims:
        return 1.0, 1.0
    if len(dims) == 1:
        return float(dims[0]), float(dims[0])
    receptive = math.prod(dims[:-2])
    return float(dims[-2] * receptive), float(dims[-1] * receptive)


def default_w_init(fan_in: int) -> Initializer:
    """Sonnet's default kernel initializer, `TruncatedNormal(stddev=1/sqrt(fan_in))`.

    The 1/sqrt(fan_in) scale keeps the outputs' variance near the inputs' for independent
    zero-mean inputs (LeCun et al., 1998, "Efficient BackProp"). The normal is cut at two
    standard deviations, so the weights' actual standard deviation is about
    0.88/sqrt(fan_in), and the outputs' variance about 0.77 times the inputs'.
    """
    return TruncatedNormal(stddev=1.0 / math.sqrt(fan_in))
