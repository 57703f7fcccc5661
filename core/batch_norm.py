"""BatchNorm and CrossReplicaBatchNorm: normalise each channel by batch statistics.

Batch normalisation (Ioffe & Szegedy, 2015, arXiv:1502.03167) in training normalises
with the mean and variance of the batch and folds them into moving averages, which
inference then normalises with. How the batch statistics are computed, and how accurate
they are: docs/batch_norm.md.

How each kind of state stays in sync across replicas (policy table in core/distribute.py):

- `scale`, `offset` (trainable): not written by the module. The training step all-reduces
  their gradients, so every replica applies the same update.
- moving mean and variance (the `hidden` and `average` of the two
  `ExponentialMovingAverage` submodules): "mean" policy, so the replicas' writes are
  averaged. Under `BatchNorm` each replica writes from its own batch, so the moving mean
  follows the mean over replicas of their batch means and the moving variance the mean of
  their batch variances. The latter leaves out the spread between the replicas' means:
  it is the variance of the whole batch only when every replica sees the same
  distribution. Under `CrossReplicaBatchNorm` every replica writes the same statistics
  of the whole batch; averaging them keeps them exact.
- the averages' update counters (int64): "first" policy; every replica counts alike.
"""

import numbers

import numpy as np
import tensorflow as tf

from core import initializers, utils
from core.module import Module, once
from core.moving_averages import ExponentialMovingAverage

_LOW_PRECISION = (tf.float16, tf.bfloat16)
_PER_EXAMPLE_HINT = " (give {what} of shape [channels], or [batch, 1, ..., channels] for per-example values)"


def _eager_bool(value: bool | tf.Tensor) -> bool | tf.Tensor:
    """A flag as a Python bool when its value is known now (eager), else the tensor."""
    return bool(value) if tf.is_tensor(value) and tf.executing_eagerly() else value


def _constant_axes(value, rank: int, reduce_axes: list[int]) -> list[int]:
    """The axes of `reduce_axes` along which `value`, broadcast to rank `rank`, has size 1."""
    if value is None:
        return reduce_axes
    shape = getattr(value, "shape", None)
    shape = tf.TensorShape(np.shape(value) if shape is None else shape)
    if shape.rank is None:
        return []
    padded = [1] * (rank - shape.rank) + shape.as_list()
    return [i for i in reduce_axes if padded[i] == 1]


class BatchNorm(Module):
    """Normalises each channel by the batch's statistics in training, moving averages otherwise.

    `outputs = (inputs - mean) / sqrt(variance + eps) * scale + offset`, where the mean
    and variance are taken per channel over every other axis. In training
    (`is_training=True`) they come from the batch and then update the moving averages
    (`moving_mean`, `moving_variance`, debiased `ExponentialMovingAverage`s); in
    inference they are the moving averages, or the batch's with `test_local_stats=True`.

    The same variables, shapes and numerics as Sonnet 2's `BatchNorm`, including one
    quirk: for inputs of rank 4 with channels last, the moving variance tracks the
    unbiased batch variance (times n / (n - 1), n the elements per channel), as in
    Ioffe & Szegedy's inference rule and as TensorFlow's fused batch-norm kernel (which
    Sonnet uses there) reports it; for every other layout it tracks the biased one.
    Normalisation itself always uses the biased batch variance.

    The batch statistics are accurate whatever the mean (docs/batch_norm.md): they come
    from TensorFlow's fused kernel applied to the inputs shifted by a per-channel mean
    (`_ShiftedFusedKernel`), or, for float64 inputs and `CrossReplicaBatchNorm` over
    several replicas, from a corrected two-pass algorithm in plain ops (`_moments`,
    `_normalize_batch`). Float16 and bfloat16 inputs are normalised, and their
    statistics averaged, in float32; the parameters and moving averages keep the
    input's dtype.

    Scale and offset are used in one of three ways: learnt (`create_scale=True`), absent
    (`create_scale=False`, nothing passed; the variable `scale` still exists, fixed at
    one, as in Sonnet), or given at call time (`create_scale=False`, `scale=...`, for
    conditional normalisation; any shape that broadcasts to the inputs' shape, such as
    [channels] or the per-example [batch, 1, 1, channels]).

    Args:
      create_scale: whether to learn a per-channel `scale`.
      create_offset: whether to learn a per-channel `offset`.
      decay_rate: decay of the moving averages, in [0, 1).
      eps: added to the variance before the square root, for stability.
      scale_init: initializer of `scale`; ones by default, so the layer starts as pure
        normalisation. Only with `create_scale=True`.
      offset_init: initializer of `offset`; zeros by default. Only with `create_offset=True`.
      data_format: where the channels are: "channels_last" (default), "channels_first",
        or a layout string such as "NHWC", "NCHW", "NC", "BTD".
      name: module name.

    Raises:
      ValueError: for an initializer without the matching `create_*`, an unknown
        `data_format`, a `decay_rate` outside [0, 1) or a non-positive `eps`.
    """

    def __init__(
        self,
        create_scale: bool,
        create_offset: bool,
        decay_rate: float = 0.999,
        eps: float = 1e-5,
        scale_init: initializers.Initializer | None = None,
        offset_init: initializers.Initializer | None = None,
        data_format: str = "channels_last",
        name: str | None = None,
    ):
        super().__init__(name=name)
        who = utils.describe(self)
        if not create_scale and scale_init is not None:
            raise ValueError(f"{who}: scale_init given but create_scale=False")
        if not create_offset and offset_init is not None:
            raise ValueError(f"{who}: offset_init given but create_offset=False")
        channel_index = utils.channel_index(data_format)
        if channel_index is None:
            raise ValueError(
                f"{who}: unknown data_format {data_format!r}; use 'channels_last', 'channels_first' or a "
                "layout such as 'NHWC', 'NCHW' or 'BTD'"
            )
        if isinstance(decay_rate, bool) or not isinstance(decay_rate, numbers.Real) or not 0.0 <= decay_rate < 1.0:
            raise ValueError(f"{who}: decay_rate must be in [0, 1), got {decay_rate!r}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"{who}: eps must be a positive number, got {eps!r}")
        self.create_scale = bool(create_scale)
        self.create_offset = bool(create_offset)
        self.decay_rate = float(decay_rate)
        self.eps = float(eps)
        self.data_format = data_format
        self.channel_index = channel_index
        self.scale_init = scale_init or initializers.Ones()
        self.offset_init = offset_init or initializers.Zeros()
        self.moving_mean = ExponentialMovingAverage(self.decay_rate, name="moving_mean")
        self.moving_variance = ExponentialMovingAverage(self.decay_rate, name="moving_variance")

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        utils.check_min_rank(self, inputs, 2, layout="[batch, ..., channels] or [batch, channels, ...]")
        utils.check_floating(self, inputs)
        shape = inputs.shape
        rank = shape.rank
        axis = self.channel_index % rank
        channels = shape[axis]
        if channels is None:
            raise ValueError(
                f"{utils.describe(self)}: the channel count (axis {self.channel_index}) must be known, "
                f"got shape {shape}"
            )
        dtype = tf.as_dtype(inputs.dtype)
        self._dtype = dtype
        self._low_precision = dtype in _LOW_PRECISION
        self._rank = rank
        self._channels = channels
        self._reduce_axes = [i for i in range(rank) if i != axis]
        self._stat_shape = [channels if i == axis else 1 for i in range(rank)]
        # Where Sonnet runs TensorFlow's fused kernel; it reports the unbiased variance.
        self._unbiased_moving_variance = rank == 4 and self.channel_index == -1
        # Inference with the moving averages by the fused kernel, where Sonnet uses it (it
        # takes float32 parameters).
        self._fused_inference = self._unbiased_moving_variance and dtype == tf.float32
        # Batch statistics by the fused kernel, which computes in float32 only.
        self._shifted_fused = None
        if dtype != tf.float64:
            self._shifted_fused = _ShiftedFusedKernel(shape, axis, self._reduce_axes, self._stat_shape, self.eps)
        zeros = tf.zeros(self._stat_shape, dtype)
        self.moving_mean.initialize(zeros)
        self.moving_variance.initialize(zeros)
        param_shape = [channels] if self.channel_index == -1 else [channels] + [1] * (rank - 2)
        self.scale = tf.Variable(self.scale_init(param_shape, dtype), name="scale", trainable=self.create_scale)
        self.offset = tf.Variable(self.offset_init(param_shape, dtype), name="offset", trainable=self.create_offset)

    def __call__(
        self,
        inputs: tf.Tensor,
        is_training: bool | tf.Tensor,
        test_local_stats: bool | tf.Tensor = False,
        scale: tf.Tensor | None = None,
        offset: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Normalises `inputs`.

        Args:
          inputs: [batch, ..., channels] (or channels first, per `data_format`); the same
            rank, channel count and dtype at every call.
          is_training: whether to normalise with the batch's statistics and update the
            moving averages. A bool (Python or NumPy), or a boolean scalar tensor (then
            both statistics are computed and one is selected without control flow, so
            the call also works in replica contexts).
          test_local_stats: when not training, normalise with the batch's statistics
            instead of the moving averages (which then stay as they are).
          scale: a scale to apply, when `create_scale=False`; its shape must broadcast
            to the inputs' shape ([channels], or [batch, 1, ..., channels] per example).
          offset: an offset to add, when `create_offset=False`; shaped as `scale`.

        Returns:
          The normalised inputs, with their shape and dtype.

        Raises:
          ValueError: for inputs of another rank or channel count than the first,
            `scale`/`offset` given while the module learns its own, or of a shape that
            would broadcast the inputs to a bigger shape.
          TypeError: for inputs of another dtype than the first, or flags that are not
            booleans.
        """
        if scale is not None and self.create_scale:
            raise ValueError(
                f"{utils.describe(self)}: scale passed at call time, but the module learns its own (create_scale=True)"
            )
        if offset is not None and self.create_offset:
            raise ValueError(
                f"{utils.describe(self)}: offset passed at call time, "
                "but the module learns its own (create_offset=True)"
            )
        if not isinstance(inputs, tf.Tensor):
            inputs = tf.convert_to_tensor(inputs)
        self._initialize(inputs)
        shape = inputs.shape
        # One cheap test on the hot path; the detailed checks run only when it fails.
        if inputs.dtype is not self._dtype or shape.rank != self._rank or shape[self.channel_index] != self._channels:
            self._check(inputs)
        own_params = scale is None and offset is None
        if not own_params:
            utils.check_broadcasts_to(self, scale, shape, "scale", _PER_EXAMPLE_HINT.format(what="scale"))
            utils.check_broadcasts_to(self, offset, shape, "offset", _PER_EXAMPLE_HINT.format(what="offset"))
        if self.create_scale:
            scale = self.scale
        if self.create_offset:
            offset = self.offset
        tensor_flags = False
        if type(is_training) is not bool or type(test_local_stats) is not bool:
            is_training = _eager_bool(utils.flag(self, is_training, "is_training"))
            test_local_stats = _eager_bool(utils.flag(self, test_local_stats, "test_local_stats"))
            tensor_flags = tf.is_tensor(is_training) or tf.is_tensor(test_local_stats)
        use_batch = tensor_flags or is_training or test_local_stats
        if not use_batch and own_params and self._fused_inference:
            return self._normalize_by_moving_averages_fused(inputs)

        x = inputs
        if self._low_precision:
            x = tf.cast(x, tf.float32)
            scale = None if scale is None else tf.cast(scale, tf.float32)
            offset = None if offset is None else tf.cast(offset, tf.float32)
        if tensor_flags:
            outputs = self._normalize_selected(x, is_training, test_local_stats, scale, offset)
        elif use_batch:
            outputs, mean, variance, count = self._batch_normalize(x, scale, offset, own_params)
            if is_training:
                self._update_moving_averages(mean, variance, count)
        else:
            outputs = self._normalize(x, *self._moving_statistics(), scale, offset)
        return tf.cast(outputs, self._dtype) if self._low_precision else outputs

    def _check(self, inputs: tf.Tensor) -> None:
        utils.check_dtype(self, inputs, self._dtype)
        utils.check_rank(self, inputs, self._rank)
        utils.check_size(self, inputs, self.channel_index, self._channels, meaning="channel count")

    def _batch_normalize(self, inputs, scale, offset, own_params: bool) -> tuple:
        """Normalises by the batch's statistics: outputs, mean, (biased) variance, element count.

        The statistics have the statistics' shape or, channels last, [channels] (the same
        numbers, which the moving averages broadcast).
        """
        if self._shifted_fused is not None:
            outputs, mean, variance = self._shifted_fused(inputs, scale, offset, own_params)
            return outputs, mean, variance, self._count(inputs)
        return self._plain_batch_normalize(inputs, scale, offset)

    # --- the moving averages ------------------------------------------------------------

    def _update_moving_averages(self, mean, variance, count, enabled: tf.Tensor | None = None) -> None:
        """Folds a batch's statistics into `moving_mean` and `moving_variance`.

        Args:
          mean: the batch mean per channel, in the statistics' shape or [channels].
          variance: the biased batch variance, likewise; made unbiased here where the
            moving variance tracks the unbiased one (see the class docstring).
          count: the number of elements per channel it came from.
          enabled: a boolean scalar tensor that skips the update when false (without
            control flow), or None.
        """
        if self._unbiased_moving_variance:
            variance = variance * _bessel(count, variance.dtype)
        # Low-precision averages take the float32 statistics and round once, at the end.
        self.moving_mean.update(mean, enabled=enabled)
        self.moving_variance.update(variance, enabled=enabled)

    def _moving_statistics(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The moving mean and variance, in the dtype the maths runs in."""
        mean, variance = self.moving_mean.average, self.moving_variance.average
        if self._low_precision:
            return tf.cast(mean, tf.float32), tf.cast(variance, tf.float32)
        return mean, variance

    def _normalize_by_moving_averages_fused(self, inputs: tf.Tensor) -> tf.Tensor:
        """Normalises with the moving averages by TensorFlow's fused kernel (NHWC, float32), as Sonnet."""
        outputs, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=self.scale,
            offset=self.offset,
            mean=tf.reshape(self.moving_mean.average, [self._channels]),
            variance=tf.reshape(self.moving_variance.average, [self._channels]),
            epsilon=self.eps,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=False,
        )
        return outputs

    # --- the plain path: statistics and normalisation in plain ops ----------------------

    def _plain_batch_normalize(self, inputs, scale, offset) -> tuple:
        """`_batch_normalize` by `_moments` and `_normalize_batch`."""
        mean, variance, count = self._moments(inputs)
        return self._normalize_batch(inputs, mean, variance, count, scale, offset), mean, variance, count

    def _moments(self, inputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | int]:
        """Per-channel mean and (biased) variance of `inputs`, and the element count.

        The corrected two-pass algorithm (Chan, Golub & LeVeque, 1983): the mean and mean
        square of the values centred on a provisional mean, whose rounding error (the
        mean of the centred values) is added back to the mean and taken out of the
        variance. In exact arithmetic the correction is zero and the gradients are those
        of the textbook formulas (the provisional mean is a constant shift).
        """
        shift = tf.stop_gradient(tf.reduce_mean(inputs, self._reduce_axes, keepdims=True))
        centred = inputs - shift
        correction = tf.reduce_mean(centred, self._reduce_axes, keepdims=True)
        mean_square = tf.reduce_mean(tf.square(centred), self._reduce_axes, keepdims=True)
        # Rounding can take a constant channel's variance a hair below zero.
        variance = tf.maximum(mean_square - tf.square(correction), 0.0)
        return shift + correction, variance, self._count(inputs)

    def _count(self, inputs: tf.Tensor) -> tf.Tensor | int:
        """The number of elements per channel: a Python int when the shape is known."""
        count = 1
        for i in self._reduce_axes:
            if inputs.shape[i] is None:
                return tf.size(inputs) // self._channels
            count *= inputs.shape[i]
        return count

    def _normalize(self, inputs, mean, variance, scale, offset) -> tf.Tensor:
        # (x - mean) * inv rather than x * inv - mean * inv: the subtraction of two nearby
        # numbers is then exact, which matters when the mean is large against the spread.
        inv = tf.math.rsqrt(variance + self.eps)
        if scale is not None:
            inv = inv * scale
        outputs = (inputs - mean) * inv
        if offset is not None:
            outputs = outputs + offset
        return outputs

    def _normalize_batch(self, inputs, mean, variance, count, scale, offset) -> tf.Tensor:
        """Normalises by the batch statistics `mean` and `variance`, with the gradient in closed form.

        With x_hat = (x - mean) * inv, inv = 1 / sqrt(variance + eps), g = dy * scale and
        m the element count per channel, the derivative through the statistics included is
        (Ioffe & Szegedy, 2015, section 3)

            dx = inv / m * (m * g - sum(g) - x_hat * sum(g * x_hat)),

        the sums over the statistics' batch (`_batch_sums`). Where the scale is constant
        along reduced axes, dy and dy * x_hat are summed over them first, which also gives
        the scale's and offset's gradients. `mean` and `variance` keep their own gradient
        paths, unused in the first derivative, so that second derivatives are right too.
        """
        inv = tf.math.rsqrt(variance + self.eps)
        m = float(count) if isinstance(count, int) else tf.cast(count, inputs.dtype)
        # Variables are read here, so that their gradients flow through the reads.
        scale, offset = [p if p is None else tf.convert_to_tensor(p, inputs.dtype) for p in (scale, offset)]
        first = _constant_axes(scale, self._rank, self._reduce_axes)
        rest = [i for i in self._reduce_axes if i not in first]
        # The offset's gradient is a sum of dy's too; over `first` only if the offset is constant there.
        offset_first = offset is not None and not set(first) - set(
            _constant_axes(offset, self._rank, self._reduce_axes)
        )
        factor = inv if scale is None else inv * scale

        @tf.custom_gradient
        def normalize(x, *params):
            centred = x - mean
            y = centred * factor
            return (y if offset is None else y + params[-1]), lambda dy: grad(dy, centred)

        def grad(dy, centred):
            dy_sum = tf.reduce_sum(dy, first, keepdims=True)
            dy_centred_sum = tf.reduce_sum(dy * centred, first, keepdims=True)
            dy_hat_sum = dy_centred_sum * inv  # the sum of dy * x_hat
            sums = [dy_sum, dy_hat_sum]
            if scale is not None:
                sums = [s * scale for s in sums]
                if rest:
                    sums = [tf.reduce_sum(s, rest, keepdims=True) for s in sums]
            g_sum, g_hat_sum = self._batch_sums(sums)
            dx = dy * factor - (centred * (g_hat_sum * inv * inv / m) + g_sum * inv / m)
            grads = [dx]
            if scale is not None:
                grads.append(_sum_to_shape_of(dy_hat_sum, scale))
            if offset is not None:
                grads.append(_sum_to_shape_of(dy_sum if offset_first else dy, offset))
            return grads

        return normalize(inputs, *[p for p in (scale, offset) if p is not None])

    def _batch_sums(self, sums: list[tf.Tensor]) -> list[tf.Tensor]:
        """Per-channel sums over this replica's batch made sums over the statistics' batch."""
        return sums

    def _normalize_selected(self, inputs, is_training, test_local_stats, scale, offset) -> tf.Tensor:
        """The call with tensor flags: both statistics, selected with `tf.where`, by the plain path."""
        is_training = tf.convert_to_tensor(is_training, tf.bool)
        use_batch = tf.logical_or(is_training, tf.convert_to_tensor(test_local_stats, tf.bool))
        batch_mean, batch_variance, count = self._moments(inputs)
        moving_mean, moving_variance = self._moving_statistics()
        mean = tf.where(use_batch, batch_mean, moving_mean)
        variance = tf.where(use_batch, batch_variance, moving_variance)
        outputs = self._normalize(inputs, mean, variance, scale, offset)
        self._update_moving_averages(batch_mean, batch_variance, count, enabled=is_training)
        return outputs


def _bessel(count: tf.Tensor | int, dtype: tf.DType) -> tf.Tensor | float:
    """n / (n - 1), or 1 for n = 1, as the fused kernel has it."""
    if isinstance(count, int):
        return count / (count - 1) if count > 1 else 1.0
    count = tf.cast(count, dtype)
    return count / tf.maximum(count - 1, 1)


def _sum_to_shape_of(t: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """The gradient `t` of a value broadcast from `like`: summed over the broadcast axes."""
    if like.shape.is_fully_defined() and t.shape.is_fully_defined():
        if like.shape == t.shape:
            return t
        if like.shape.num_elements() == t.shape.num_elements():
            return tf.reshape(t, like.shape)
    _, axes = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(t), s1=tf.shape(like))
    return tf.reshape(tf.reduce_sum(t, axes), tf.shape(like))


class _ShiftedFusedKernel:
    """Batch normalisation by TensorFlow's fused kernel, on inputs shifted by a per-channel mean.

    The kernel computes the statistics of the inputs less the (stop-gradient) mean of
    the first example's values per channel. Shifting by a constant changes neither the
    variance nor the outputs nor their derivative, so autodiff through the kernel (its
    fused gradient kernel) gives the batch-norm gradient, and the kernel's mean plus the
    shift is the batch mean. The shift bounds what the kernel's E[x^2] - E[x]^2 (under
    XLA) can lose to cancellation to log2(batch size) bits: docs/batch_norm.md.

    The kernel takes 4-D float32 inputs: others are seen as channels last,
    [elements, 1, 1, channels], or channels first, [batch, channels, elements, 1]. A
    per-channel scale and offset go into the kernel; others (per example, given at call
    time) are applied to its outputs.
    """

    def __init__(self, shape: tf.TensorShape, axis: int, reduce_axes: list[int], stat_shape: list[int], eps: float):
        rank, channels = shape.rank, shape[axis]
        self._rank = rank
        self._channels = channels
        self._reduce_axes = reduce_axes
        self._stat_shape = stat_shape
        self._eps = eps
        # The first example: index 0 along the first reduced axis (the batch axis, unless
        # the channels are there).
        self._first_example = tuple([slice(None)] * reduce_axes[0] + [slice(0, 1)])
        self._layout = "NHWC" if axis == rank - 1 else "NCHW"
        self._shape = None
        if rank != 4:
            spatial = shape[axis + 1 :].num_elements()
            self._shape = [-1, 1, 1, channels] if axis == rank - 1 else [-1, channels, spatial, 1]
        with tf.init_scope():
            # The kernel's [channels] scale and offset when there are none, and its
            # (unused) statistics inputs in training.
            self._defaults = (tf.ones([channels]), tf.zeros([channels]), tf.constant([], tf.float32))

    def __call__(self, inputs, scale, offset, own_params: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Outputs, batch mean and biased batch variance (channels last, [channels] vectors)."""
        shift = tf.stop_gradient(tf.reduce_mean(inputs[self._first_example], self._reduce_axes, keepdims=True))
        centred = inputs - shift
        if self._shape is not None:
            if self._shape[2] is None:  # channels first, with unknown spatial sizes
                centred = tf.reshape(centred, [tf.shape(inputs)[0], self._channels, -1, 1])
            else:
                centred = tf.reshape(centred, self._shape)
        ones, zeros, empty = self._defaults
        outer_scale = outer_offset = None
        if not own_params:
            if scale is not None and not self._is_per_channel(scale):
                scale, outer_scale = None, scale
            # The offset comes after the scale.
            if offset is not None and (outer_scale is not None or not self._is_per_channel(offset)):
                offset, outer_offset = None, offset
        # The kernel's fifth output (reserve_space_2) is the biased variance; its third, the unbiased one.
        outputs, mean, _, _, variance, _ = tf.raw_ops.FusedBatchNormV3(
            x=centred,
            scale=ones if scale is None else self._channel_vector(scale),
            offset=zeros if offset is None else self._channel_vector(offset),
            mean=empty,
            variance=empty,
            epsilon=self._eps,
            exponential_avg_factor=1.0,
            data_format=self._layout,
            is_training=True,
        )
        if self._shape is not None:
            outputs = tf.reshape(outputs, tf.shape(inputs))
        if outer_scale is not None:
            outputs = outputs * outer_scale
        if outer_offset is not None:
            outputs = outputs + outer_offset
        if self._layout == "NCHW":
            mean, variance = tf.reshape(mean, self._stat_shape), tf.reshape(variance, self._stat_shape)
        # Channels last, the [channels] vectors broadcast to the statistics' shape as they are
        # (a reshape each would cost more than the rest of the call in eager mode).
        return outputs, shift + mean, variance

    def _is_per_channel(self, value) -> bool:
        """Whether `value`, broadcast to the inputs, is constant along every axis but the channel axis."""
        return not set(self._reduce_axes) - set(_constant_axes(value, self._rank, self._reduce_axes))

    def _channel_vector(self, value) -> tf.Tensor | tf.Variable:
        """A per-channel scale or offset as the kernel's [channels] vector."""
        if tf.is_tensor(value) and value.shape.rank == 1 and value.shape[0] == self._channels:
            return value  # a variable as it is: the kernel reads it
        value = tf.convert_to_tensor(value, tf.float32)
        if value.shape.num_elements() == self._channels:
            return tf.reshape(value, [self._channels])
        return tf.broadcast_to(tf.reshape(value, [-1]), [self._channels])  # one value for all channels


class CrossReplicaBatchNorm(BatchNorm):
    """Batch normalisation with the statistics of the whole batch across replicas.

    Takes the same arguments as `BatchNorm` and equals it with one replica (the default
    strategy, `OneDeviceStrategy`). Called inside `strategy.run` of a multi-replica
    strategy (`MirroredStrategy`, `MultiWorkerMirroredStrategy`; `TPUStrategy` by
    design, untested here), it normalises every replica's batch with the mean and
    variance of all replicas' batches together, weighting each replica by its element
    count, so uneven per-replica batches give exactly the statistics of their
    concatenation. Gradients flow through the
    shared statistics: a replica's gradient is that of the sum of every replica's loss,
    as for batch norm of the concatenated batch.

    The statistics take two collectives, a parallel form of the corrected two-pass
    algorithm of `BatchNorm._moments`: an all-reduce (sum) of each replica's per-channel
    sums and element count gives a provisional global mean; a second, of the sums of the
    deviations from it and of their squares, gives the correction to the mean and the
    global variance (why not one collective: docs/batch_norm.md). The backward pass
    takes one all-reduce of 2C numbers. With one replica no collective runs, and the
    module computes exactly as `BatchNorm`, fused kernel included.

    In inference with the moving averages no collective runs either, and the module
    also works in the cross-replica context; batch statistics need a replica context.
    With tensor flags (see `BatchNorm.__call__`) the batch statistics, and so the
    collectives, are computed at every call.

    Args: as `BatchNorm`.
    """

    def _replica_context(self) -> tf.distribute.ReplicaContext:
        ctx = tf.distribute.get_replica_context()
        if ctx is None:
            raise RuntimeError(
                f"{utils.describe(self)}: batch statistics need a replica context; call the module inside "
                "strategy.run, not in the cross-replica context"
            )
        return ctx

    def _batch_normalize(self, inputs, scale, offset, own_params: bool) -> tuple:
        if self._replica_context().num_replicas_in_sync == 1:
            return super()._batch_normalize(inputs, scale, offset, own_params)
        # The fused kernel would see this replica's batch only.
        return self._plain_batch_normalize(inputs, scale, offset)

    def _batch_sums(self, sums: list[tf.Tensor]) -> list[tf.Tensor]:
        ctx = self._replica_context()
        if ctx.num_replicas_in_sync == 1:
            return sums
        totals = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.concat(sums, 0))
        return tf.split(totals, len(sums), 0)

    def _moments(self, inputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | int]:
        ctx = self._replica_context()
        if ctx.num_replicas_in_sync == 1:
            return super()._moments(inputs)
        # Low-precision inputs arrive here already in float32 (see `BatchNorm.__call__`).
        # The provisional mean is a constant shift (see `BatchNorm._moments`), so the
        # first collective needs no gradient.
        local_count = tf.cast(tf.size(inputs) // self._channels, inputs.dtype)
        local_sum = tf.reshape(tf.reduce_sum(inputs, self._reduce_axes), [self._channels])
        sums = tf.stop_gradient(tf.concat([local_sum, local_count[None]], 0))
        sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sums)
        count = sums[-1]
        shift = tf.reshape(sums[:-1] / count, self._stat_shape)
        centred = inputs - shift
        local = [tf.reduce_sum(centred, self._reduce_axes), tf.reduce_sum(tf.square(centred), self._reduce_axes)]
        totals = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.concat(local, 0)) / count
        correction = tf.reshape(totals[: self._channels], self._stat_shape)
        variance = tf.maximum(tf.reshape(totals[self._channels :], self._stat_shape) - tf.square(correction), 0.0)
        return shift + correction, variance, count
