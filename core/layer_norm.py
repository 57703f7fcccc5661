"""LayerNorm and GroupNorm: normalisation over chosen axes of each example.

Both share one normalising function, `normalize`, whose moments stay accurate when the
mean is large against the spread (see its docstring).
"""

import collections.abc
import numbers
from collections.abc import Iterable

import tensorflow as tf

from core import initializers, utils
from core.module import Module, once

Axis = int | slice | Iterable[int]

_HALF = (tf.float16, tf.bfloat16)


def normalize(x: tf.Tensor, axes: tuple[int, ...], eps: float) -> tf.Tensor:
    """Returns `(x - mean) / sqrt(variance + eps)`, the moments taken over `axes`.

    The moments come from a corrected two-pass algorithm (Chan, Golub & LeVeque, 1983,
    "Algorithms for computing the sample variance"): a first pass takes the mean; the
    second centres `x` on it and takes the mean of the centred values, which is the
    first mean's rounding error, recovered accurately because the centred values are
    small; subtracting it re-centres `x` exactly enough, and the variance is the mean
    square of the re-centred values. The variance is never the difference of two large
    numbers (the E[x^2] - E[x]^2 shortcut is, and loses every digit in float32 once the
    mean is about 4000 times the spread), and the centring error that a plain two-pass
    leaves in the outputs (about 1e-3 for float32 data of mean 1e4 and spread 1) drops
    to the rounding of the data itself. In exact arithmetic the correction is zero, so
    values and gradients are those of the textbook formula.
    """
    mean = tf.reduce_mean(x, axes, keepdims=True)
    centred = x - mean
    centred -= tf.reduce_mean(centred, axes, keepdims=True)
    variance = tf.reduce_mean(tf.square(centred), axes, keepdims=True)
    return centred * tf.math.rsqrt(variance + eps)


def _channel_index(module: Module, data_format: str) -> int:
    """1 for channels-first formats, -1 for channels-last ones (Sonnet's spellings)."""
    index = utils.channel_index(data_format)
    if index is None:
        raise ValueError(
            f"{utils.describe(module)}: data_format must be 'channels_first', 'channels_last', "
            f"a spatial format such as 'NCHW' or 'NHWC', or a sequential one such as 'BTHWD'; "
            f"got {data_format!r}"
        )
    return index


def _check_axis(module: Module, axis: Axis) -> int | slice | tuple[int, ...]:
    """Validates the `axis` argument; ints and sequences of ints come back as a tuple of ints."""
    if isinstance(axis, slice):
        return axis
    if utils.is_int(axis):
        return (int(axis),)
    if isinstance(axis, collections.abc.Iterable) and not isinstance(axis, str):
        axes = tuple(axis)
        if all(utils.is_int(a) for a in axes):
            return tuple(int(a) for a in axes)
    raise ValueError(f"{utils.describe(module)}: axis must be an int, a slice or a sequence of ints, got {axis!r}")


def _resolve_axes(module: Module, axis: int | slice | tuple[int, ...], shape: tf.TensorShape) -> tuple[int, ...]:
    """The normalised axes as sorted non-negative ints, for inputs of `shape`."""
    rank = shape.rank
    if isinstance(axis, slice):
        axes = tuple(range(rank))[axis]
    else:
        bad = [a for a in axis if not -rank <= a < rank]
        if bad:
            raise ValueError(f"{utils.describe(module)}: axis {bad} out of range for inputs of shape {shape}")
        axes = tuple(a % rank for a in axis)
    if not axes:
        raise ValueError(f"{utils.describe(module)}: axis {axis!r} selects no axis of inputs of shape {shape}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{utils.describe(module)}: axis {axis!r} repeats an axis of inputs of shape {shape}")
    return tuple(sorted(axes))


def _check_param_args(module: Module, create_scale: bool, create_offset: bool, scale_init, offset_init, eps) -> None:
    if not create_scale and scale_init is not None:
        raise ValueError(f"{utils.describe(module)}: scale_init given but create_scale=False")
    if not create_offset and offset_init is not None:
        raise ValueError(f"{utils.describe(module)}: offset_init given but create_offset=False")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"{utils.describe(module)}: eps must be a non-negative number, got {eps!r}")


class LayerNorm(Module):
    """Normalises inputs over the given axes, then applies a per-channel scale and offset.

    `outputs = scale * (x - mean) / sqrt(variance + eps) + offset`, where the mean and
    variance are taken over `axis` of each input separately (Ba, Kiros & Hinton, 2016,
    arXiv:1607.06450). Scale and offset have one value per channel. Each of them is
    either a variable the module owns (`create_scale=True`), a tensor given at call time
    (conditional normalisation), or absent. Float16 and bfloat16 inputs are normalised
    in float32.

    Args:
      axis: the axes to normalise over: an int, a sequence of ints, or a slice of the
        input's axes (`slice(1, None)`: everything but the batch axis).
      create_scale: whether to make a trainable `scale` variable.
      create_offset: whether to make a trainable `offset` variable.
      eps: added to the variance before the square root, so a constant input does not
        divide by zero.
      scale_init: initializer of `scale`; ones by default (the identity transform).
        Only with `create_scale=True`.
      offset_init: initializer of `offset`; zeros by default. Only with
        `create_offset=True`.
      data_format: where the channels are: "channels_last" (also "NHWC", "NWC",
        "BTHWD" and the like) or "channels_first" ("NCHW", ...). The scale and offset
        have shape [channels] for channels-last inputs and [channels, 1, ...] (one 1
        per spatial axis) for channels-first ones.
      name: module name.

    Attributes:
      scale: the scale variable, or None.
      offset: the offset variable, or None.
    """

    def __init__(
        self,
        axis: Axis,
        create_scale: bool,
        create_offset: bool,
        eps: float = 1e-5,
        scale_init: initializers.Initializer | None = None,
        offset_init: initializers.Initializer | None = None,
        data_format: str = "channels_last",
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._axis = _check_axis(self, axis)
        _check_param_args(self, create_scale, create_offset, scale_init, offset_init, eps)
        self._channel_index = _channel_index(self, data_format)
        self.eps = float(eps)
        self.data_format = data_format
        self.create_scale = create_scale
        self.create_offset = create_offset
        self.scale_init = scale_init
        self.offset_init = offset_init

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        shape = inputs.shape
        if shape.rank is None:
            raise ValueError(f"{utils.describe(self)}: the rank of the inputs must be known, got shape {shape}")
        utils.check_floating(self, inputs)
        self._axes = _resolve_axes(self, self._axis, shape)
        self._rank = shape.rank
        self._dtype = tf.as_dtype(inputs.dtype)
        self.scale, self.offset = _make_params(self, inputs, self.scale_init, self.offset_init)
        # The channel count is part of the contract only when parameters depend on it.
        self._channels = shape[self._channel_index] if (self.create_scale or self.create_offset) else None

    def __call__(self, inputs: tf.Tensor, scale: tf.Tensor | None = None, offset: tf.Tensor | None = None) -> tf.Tensor:
        """Normalises `inputs`.

        Args:
          inputs: a float tensor of the rank of the first call's inputs.
          scale: a tensor whose shape broadcasts to the inputs' shape (per channel, or
            per example such as [batch, 1, channels]), multiplying the normalised
            values; only when the module has no scale variable.
          offset: a tensor shaped as `scale`, added last; only when the module has no
            offset variable.

        Returns:
          A tensor of the shape and dtype of `inputs`.

        Raises:
          ValueError: on a rank or channel count other than the first call's, a
            scale/offset given although the module owns one, or one whose shape would
            broadcast the inputs to a bigger shape.
          TypeError: on a dtype other than the first call's.
        """
        self._initialize(inputs)
        shape = inputs.shape
        if (
            inputs.dtype is not self._dtype
            or shape.rank != self._rank
            or (self._channels is not None and shape[self._channel_index] != self._channels)
        ):
            _check_inputs(self, inputs)
        scale, offset = _params(self, shape, scale, offset)
        return _normalize_and_scale(inputs, self._axes, self.eps, scale, offset)


class GroupNorm(Module):
    """Splits the channels into groups and normalises each group over the given axes.

    Each of the `groups` groups of consecutive channels is normalised separately, its
    moments taken over its own channels and the other axes in `axis` (by default all
    but the batch axis), then a per-channel scale and offset are applied (Wu & He,
    2018, arXiv:1803.08494). The group axis itself is never averaged over. Scale and
    offset work as in `LayerNorm`; float16 and bfloat16 inputs are normalised in
    float32.

    Args:
      groups: number of groups; the channel count must be a multiple of it.
      axis: the input axes to normalise over, as in `LayerNorm`; including the channel
        axis means the channels within a group. Default: all but the batch axis.
      create_scale: whether to make a trainable `scale` variable.
      create_offset: whether to make a trainable `offset` variable.
      eps: added to the variance before the square root.
      scale_init: initializer of `scale`; ones by default.
      offset_init: initializer of `offset`; zeros by default.
      data_format: "channels_last" (or "NHWC", ...) or "channels_first" ("NCHW", ...).
      name: module name.

    Attributes:
      scale: the scale variable, or None.
      offset: the offset variable, or None.
    """

    def __init__(
        self,
        groups: int,
        axis: Axis = slice(1, None),
        create_scale: bool = True,
        create_offset: bool = True,
        eps: float = 1e-5,
        scale_init: initializers.Initializer | None = None,
        offset_init: initializers.Initializer | None = None,
        data_format: str = "channels_last",
        name: str | None = None,
    ):
        super().__init__(name=name)
        groups = utils.positive_int(self, groups, "groups")
        self._axis = _check_axis(self, axis)
        _check_param_args(self, create_scale, create_offset, scale_init, offset_init, eps)
        self._channel_index = _channel_index(self, data_format)
        self.groups = groups
        self.eps = float(eps)
        self.data_format = data_format
        self.create_scale = create_scale
        self.create_offset = create_offset
        self.scale_init = scale_init
        self.offset_init = offset_init

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        shape = inputs.shape
        layout = "[batch, ..., channels]" if self._channel_index == -1 else "[batch, channels, ...]"
        utils.check_min_rank(self, inputs, 2, layout=layout)
        utils.check_floating(self, inputs)
        channels = shape[self._channel_index]
        if channels is None:
            raise ValueError(f"{utils.describe(self)}: the channel count must be known, got shape {shape}")
        if channels % self.groups:
            raise ValueError(
                f"{utils.describe(self)}: {channels} channels do not split into {self.groups} groups "
                f"(inputs of shape {shape})"
            )
        axes = _resolve_axes(self, self._axis, shape)
        rank = shape.rank
        # Axes of the grouped tensor: channels-last [batch, ..., groups, per_group],
        # channels-first [batch, groups, per_group, ...]. The channel axis becomes the
        # within-group axis; the groups axis is never in the list.
        if self._channel_index == -1:
            self._axes = tuple(rank if a == rank - 1 else a for a in axes)
        else:
            self._axes = tuple(a + 1 if a >= 1 else a for a in axes)
        self._rank = rank
        self._channels = channels
        self._dtype = tf.as_dtype(inputs.dtype)
        self.scale, self.offset = _make_params(self, inputs, self.scale_init, self.offset_init)

    def __call__(self, inputs: tf.Tensor, scale: tf.Tensor | None = None, offset: tf.Tensor | None = None) -> tf.Tensor:
        """Normalises `inputs` by groups of channels.

        Args:
          inputs: a float tensor of the rank and channel count of the first call's.
          scale: a tensor whose shape broadcasts to the inputs' shape; only without a
            scale variable.
          offset: a tensor whose shape broadcasts to the inputs' shape; only without an
            offset variable.

        Returns:
          A tensor of the shape and dtype of `inputs`.

        Raises:
          ValueError: on a rank or channel count other than the first call's, a
            scale/offset given although the module owns one, or one whose shape would
            broadcast the inputs to a bigger shape.
          TypeError: on a dtype other than the first call's.
        """
        self._initialize(inputs)
        shape = inputs.shape
        if inputs.dtype is not self._dtype or shape.rank != self._rank or shape[self._channel_index] != self._channels:
            _check_inputs(self, inputs)
        scale, offset = _params(self, shape, scale, offset)
        dims = shape.as_list()
        if None in dims[1:]:
            dims = [d if d is not None else s for d, s in zip(dims, tf.unstack(tf.shape(inputs)))]
        per_group = self._channels // self.groups
        if self._channel_index == -1:
            grouped = [-1, *dims[1:-1], self.groups, per_group]
        else:
            grouped = [-1, self.groups, per_group, *dims[2:]]
        x = tf.reshape(inputs, grouped)
        return _normalize_and_scale(x, self._axes, self.eps, scale, offset, [-1, *dims[1:]])


def _normalize_and_scale(x: tf.Tensor, axes, eps: float, scale, offset, shape=None) -> tf.Tensor:
    """`normalize(x)` (in float32 for half-precision `x`), reshaped to `shape` if given,
    in `x`'s dtype, times `scale` plus `offset` (either may be None)."""
    dtype = x.dtype
    if dtype in _HALF:
        x = tf.cast(x, tf.float32)
    outputs = normalize(x, axes, eps)
    if shape is not None:
        outputs = tf.reshape(outputs, shape)
    if dtype in _HALF:
        outputs = tf.cast(outputs, dtype)
    if scale is not None:
        outputs *= scale
    if offset is not None:
        outputs += offset
    return outputs


def _make_params(module, inputs: tf.Tensor, scale_init, offset_init) -> tuple[tf.Variable | None, tf.Variable | None]:
    """The scale and offset variables (or None), one value per channel."""
    shape = inputs.shape
    if not (module.create_scale or module.create_offset):
        return None, None
    channels = shape[module._channel_index]
    if channels is None:
        raise ValueError(f"{utils.describe(module)}: the channel count must be known, got shape {shape}")
    if module._channel_index == -1:
        params_shape = [channels]
    else:
        params_shape = [channels] + [1] * (shape.rank - 2)
    dtype = tf.as_dtype(inputs.dtype)
    scale = offset = None
    if module.create_scale:
        scale = tf.Variable((scale_init or initializers.Ones())(params_shape, dtype), name="scale")
    if module.create_offset:
        offset = tf.Variable((offset_init or initializers.Zeros())(params_shape, dtype), name="offset")
    return scale, offset


def _params(module, inputs_shape: tf.TensorShape, scale: tf.Tensor | None, offset: tf.Tensor | None):
    """The scale and offset to apply: the module's variables, or those given at call time."""
    if scale is None and offset is None:
        return module.scale, module.offset
    if module.scale is not None and scale is not None:
        raise ValueError(f"{utils.describe(module)}: scale given at call time, but create_scale=True")
    if module.offset is not None and offset is not None:
        raise ValueError(f"{utils.describe(module)}: offset given at call time, but create_offset=True")
    utils.check_broadcasts_to(module, scale, inputs_shape, "scale")
    utils.check_broadcasts_to(module, offset, inputs_shape, "offset")
    return (module.scale if scale is None else scale), (module.offset if offset is None else offset)


def _check_inputs(module, inputs: tf.Tensor) -> None:
    """The detailed checks behind the one cheap test on the hot path."""
    utils.check_dtype(module, inputs, module._dtype)
    utils.check_rank(module, inputs, module._rank)
    if module._channels is not None:
        utils.check_size(module, inputs, module._channel_index, module._channels, meaning="channel count")
