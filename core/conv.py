"""Convolutions over one, two or three spatial axes: Conv1D, Conv2D, Conv3D.

Also the layout helpers every convolution in the core shares (`in_supported_layout`):
channels-first data runs on the device's own channels-first kernels where it has them,
and through its channels-last kernels between two transposes where it does not.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from core import initializers, utils
from core.module import Module, once

IntOrSeq = int | Sequence[int]
PadFn = Callable[[int], Sequence[int]]

# The two layouts each rank supports: channels last (the default) and channels first.
DATA_FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}


# --- Layouts and dilations the device has kernels for ------------------------------------
#
# TensorFlow's CPU convolution kernels take channels-last data only: in TensorFlow 2.21 a
# channels-first Conv2D, Conv3D or their gradients raise `UnimplementedError` or
# `InvalidArgumentError` ("only supports the NHWC tensor format") on the CPU, in eager
# mode and in a `tf.function`. oneDNN (`TF_ENABLE_ONEDNN_OPTS=1`, on by default on most
# Intel CPUs, off on many AMD ones) brings channels-first kernels, but for float32 only:
# float64, float16 and bfloat16 still fail there. Neither CPU path has a dilated
# transposed convolution in channels-last layout (the op that `rate` > 1 needs). GPUs
# (cuDNN) have all of these; XLA accepts every layout. Which device lacks what is
# therefore found out, not assumed: the first convolution that needs a kernel of the
# kind probes each device type the process has with a tiny convolution and both its
# gradients, once per (device type, rank, dtype, layout), and keeps the answer.

_RAW = tf.raw_ops
CHANNELS_LAST = {n: formats[0] for n, formats in DATA_FORMATS.items()}
# Permutations between channels first and last; NumPy arrays, which eager ops take faster than lists.
_TO_LAST = {n: np.array([0, *range(2, n + 2), 1], np.int32) for n in DATA_FORMATS}
_TO_FIRST = {n: np.array([0, n + 1, *range(1, n + 1)], np.int32) for n in DATA_FORMATS}
# Device types whose convolutions are compiled by XLA, which takes any layout: never probed.
_ANY_LAYOUT = frozenset({"TPU"})

# A kernel kind: (spatial axes, dtype, data_format, dilated transposed convolution or not).
Kind = tuple[int, tf.DType, str, bool]
_KERNELS: dict[tuple[str, Kind], bool] = {}  # (device type, kind) -> what the probe found
# kind -> True or False when every device type agrees, None when they differ.
_EVERYWHERE: dict[Kind, bool | None] = {}
_DEVICE_TYPES: list[str] = []  # the process's device types, read once


def device_types() -> list[str]:
    """The types of the devices this process can place ops on ("CPU", "GPU", ...), read once."""
    if not _DEVICE_TYPES:
        found = dict.fromkeys(d.device_type for d in tf.config.list_logical_devices())
        _DEVICE_TYPES.extend(t for t in found if t != "TPU_SYSTEM")
    return list(_DEVICE_TYPES)


def _probe(device_type: str, kind: Kind) -> bool:
    """Runs a tiny convolution of `kind` and the ops of both its gradients on `device_type`.

    The gradient ops are called directly: a gradient tape records nothing inside the
    `tf.init_scope` that runs the probe eagerly while a function is being traced.
    """
    n, dtype, data_format, dilated_transpose = kind
    first = data_format[1] == "C"
    n = max(n, 2)  # TensorFlow runs a 1-D convolution as a 2-D one of height 1
    ops = {2: ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")}
    ops[3] = ("Conv3D", "Conv3DBackpropInputV2", "Conv3DBackpropFilterV2")
    conv, input_grad, filter_grad = (getattr(_RAW, op) for op in ops[n])
    shape = [1, 1, *[4] * n] if first else [1, *[4] * n, 1]
    rate = 2 if dilated_transpose else 1
    options = dict(
        strides=[1] * (n + 2),
        padding="SAME",
        data_format=DATA_FORMATS[n][1 if first else 0],
        dilations=[1, 1, *[rate] * n] if first else [1, *[rate] * n, 1],
    )
    with tf.init_scope(), tf.device(f"/{device_type}:0"):  # eagerly, even while tracing
        try:
            x, w = tf.zeros(shape, dtype), tf.zeros([2] * n + [1, 1], dtype)
            # A convolution's input gradient is the transposed convolution, and back.
            conv(input=x, filter=w, **options).numpy()
            input_grad(input_sizes=shape, filter=w, out_backprop=x, **options).numpy()
            filter_grad(input=x, filter_sizes=w.shape.as_list(), out_backprop=x, **options).numpy()
        except tf.errors.OpError:
            return False
    return True


def has_kernels(
    device_type: str, num_spatial: int, dtype: tf.DType, data_format: str, dilated_transpose: bool = False
) -> bool:
    """Whether `device_type` convolves `dtype` data laid out as `data_format` over
    `num_spatial` axes, forward and backward; with `dilated_transpose`, whether it runs
    transposed convolutions with a dilation rate > 1 in that layout.

    Probed once per question and cached; device types compiled by XLA (TPU) are not
    probed: XLA takes every layout and dilation.
    """
    kind = (num_spatial, tf.as_dtype(dtype), data_format, bool(dilated_transpose))
    key = (device_type, kind)
    if key not in _KERNELS:
        _KERNELS[key] = device_type in _ANY_LAYOUT or _probe(device_type, kind)
    return _KERNELS[key]


def _scope_device_type() -> str | None:
    """The device type of the innermost `tf.device` scope, or None where there is none."""
    if tf.executing_eagerly():
        # Exported for Keras and pinned by TensorFlow's API goldens; the public alternative,
        # placing an op and reading its device, cannot tell "no scope" from the default.
        name = tf.__internal__.eager_context.get_device_name()
    else:
        name = tf.no_op().device  # a graph op takes the scope's device; unused, it is pruned
    return tf.DeviceSpec.from_string(name).device_type if name else None


def runs_natively(num_spatial: int, dtype: tf.DType, data_format: str, dilated_transpose: bool = False) -> bool:
    """Whether a convolution made here has a kernel (see `has_kernels`) on the device it runs on.

    Channels-last convolutions always have one, unless `dilated_transpose`. Otherwise:
    when every device type of the process answers alike (a CPU-only machine, a GPU
    machine whose CPU has the kernels), that answer, cached. When they differ, the
    device of the enclosing `tf.device` scope decides, and without one the device
    TensorFlow places a convolution on: the first GPU if there is one, else the CPU.
    """
    if data_format[-1] == "C" and not dilated_transpose:
        return True
    kind = (num_spatial, tf.as_dtype(dtype), data_format, bool(dilated_transpose))
    if kind not in _EVERYWHERE:
        answers = {has_kernels(t, *kind) for t in device_types()}
        _EVERYWHERE[kind] = answers.pop() if len(answers) == 1 else None
    everywhere = _EVERYWHERE[kind]
    if everywhere is not None:
        return everywhere
    device_type = _scope_device_type() or ("GPU" if "GPU" in device_types() else "CPU")
    return has_kernels(device_type, *kind)


def in_supported_layout(fn: Callable[[Any, str], tf.Tensor], inputs: Any, data_format: str) -> tf.Tensor:
    """`fn(inputs, data_format)`, on channels-last kernels where channels first has none.

    Where `data_format` is channels first ("NCW", "NCHW", "NCDHW") and the device has no
    kernel for it (`runs_natively`), `fn` gets channels-last copies of `inputs` (a
    tensor or a nest of them) with the matching channels-last format, and its output is
    transposed back: the same result, forward and gradient, in eager mode, in a
    `tf.function` and under XLA, for the cost of the transposes. Elsewhere `fn` runs on
    `inputs` as they are.

    Args:
      fn: computes a convolution's output from `inputs` in the layout it is given.
      inputs: a tensor, or a nest of tensors of one dtype, all in `data_format`.
      data_format: a layout of `DATA_FORMATS`.

    Returns:
      `fn`'s output, in `data_format`.
    """
    n = len(data_format) - 2
    if data_format[-1] == "C" or runs_natively(n, tf.nest.flatten(inputs)[0].dtype, data_format):
        return fn(inputs, data_format)
    last = tf.nest.map_structure(lambda x: _RAW.Transpose(x=x, perm=_TO_LAST[n]), inputs)
    return _RAW.Transpose(x=fn(last, CHANNELS_LAST[n]), perm=_TO_FIRST[n])


def dilate_kernel(w: tf.Tensor, rate: Sequence[int]) -> tf.Tensor:
    """`w` [*kernel_shape, a, b] with `rate - 1` zeros between its taps along each spatial axis.

    A convolution at rate 1 with the result is the convolution with `w` at `rate`, for
    devices with no kernel for the dilated one (at (dilated size / kernel size) times
    the arithmetic).
    """
    for axis, r in enumerate(rate):
        if r == 1:
            continue
        shape = w.shape.as_list()
        k = shape[axis]
        pad = [[0, 0]] * (len(shape) + 1)
        pad[axis + 1] = [0, r - 1]
        spread = tf.pad(tf.expand_dims(w, axis + 1), pad)  # each tap followed by r - 1 zeros
        spread = tf.reshape(spread, shape[:axis] + [k * r] + shape[axis + 1 :])
        w = tf.gather(spread, tf.range((k - 1) * r + 1), axis=axis)  # without the zeros after the last tap
    return w


def per_axis(module: Module, value: IntOrSeq, n: int, what: str) -> tuple[int, ...]:
    """`value` for each of `n` spatial axes: an int, or a sequence of length 1 or `n`, all >= 1.

    Python and NumPy integers count as ints, and a NumPy array as a sequence.
    """
    given = value.tolist() if isinstance(value, np.ndarray) else value  # NumPy ints become ints
    values = (given,) if utils.is_int(given) else tuple(given) if isinstance(given, Sequence) else ()
    if len(values) == 1:
        values = values * n
    if len(values) != n or not all(utils.is_int(v) and v >= 1 for v in values):
        raise ValueError(
            f"{utils.describe(module)}: {what} must be a positive int or a sequence of 1 or {n} "
            f"positive ints, got {value!r}"
        )
    return tuple(int(v) for v in values)


def channel_axis(module: Module, data_format: str, n: int) -> int:
    """The channel axis of `data_format` (1 or -1), after checking it suits `n` spatial axes."""
    formats = DATA_FORMATS[n]
    if data_format not in formats:
        raise ValueError(f"{utils.describe(module)}: data_format must be one of {formats}, got {data_format!r}")
    return -1 if data_format == formats[0] else 1


# Shared with the transposed convolutions: what a (transposed) convolution checks and
# makes on its first call, and checks on a later call whose quick test failed.


def check_first_inputs(module: Module, inputs: tf.Tensor) -> None:
    """The first inputs' rank (batch, spatial axes, channels) and floating dtype."""
    utils.check_rank(module, inputs, module.NUM_SPATIAL + 2, layout=f"[{', '.join(module.data_format)}]")
    utils.check_floating(module, inputs)


def known_input_channels(module: Module, inputs: tf.Tensor) -> int:
    """The first inputs' channel count, which must be known."""
    input_channels = inputs.shape[module._channel_axis]
    if input_channels is None:
        raise ValueError(
            f"{utils.describe(module)}: the number of input channels must be known, got shape {inputs.shape}"
        )
    return input_channels


def make_variables(module: Module, w_shape: list[int], input_channels: int, dtype: tf.DType) -> None:
    """`module.w` of `w_shape` (by `module.w_init`, or the default for its fan-in) and,
    `with_bias`, `module.b` [output_channels]."""
    dtype = tf.as_dtype(dtype)
    w_init = module.w_init or initializers.default_w_init(math.prod(module.kernel_shape) * input_channels)
    module.w = tf.Variable(w_init(w_shape, dtype), name="w")
    if module.with_bias:
        b_init = module.b_init or initializers.Zeros()
        module.b = tf.Variable(b_init([module.output_channels], dtype), name="b")


def check_inputs(module: Module, inputs: tf.Tensor) -> None:
    """A later call's dtype, rank and channel count against the first call's."""
    utils.check_dtype(module, inputs, module.w.dtype)
    utils.check_rank(module, inputs, module.NUM_SPATIAL + 2, layout=f"[{', '.join(module.data_format)}]")
    utils.check_size(module, inputs, module._channel_axis, module.input_channels, meaning="input channels")


class _ConvND(Module):
    """Shared body of Conv1D/2D/3D; subclasses fix the number of spatial axes."""

    NUM_SPATIAL: int = 0  # set by subclasses

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        stride: IntOrSeq,
        rate: IntOrSeq,
        padding: str | PadFn | Sequence[PadFn],
        with_bias: bool,
        w_init: initializers.Initializer | None,
        b_init: initializers.Initializer | None,
        data_format: str,
        name: str | None,
    ):
        super().__init__(name=name)
        n = self.NUM_SPATIAL
        self.output_channels = utils.positive_int(self, output_channels, "output_channels")
        self.kernel_shape = per_axis(self, kernel_shape, n, "kernel_shape")
        self.stride = per_axis(self, stride, n, "stride")
        self.rate = per_axis(self, rate, n, "rate")
        if max(self.stride) > 1 and max(self.rate) > 1:
            raise ValueError(
                f"{utils.describe(self)}: TensorFlow cannot combine stride > 1 with rate > 1, "
                f"got stride={stride!r} and rate={rate!r}"
            )
        self._channel_axis = channel_axis(self, data_format, n)
        self.data_format = data_format
        self.padding = padding
        self._tf_padding, self._pad_fns = self._parse_padding(padding)
        self._paddings = self._explicit_paddings()
        self._min_spatial = self._smallest_inputs()
        if not with_bias and b_init is not None:
            raise ValueError(f"{utils.describe(self)}: b_init given but with_bias=False")
        self.with_bias = with_bias
        self.w_init = w_init
        self.b_init = b_init

    def _parse_padding(self, padding) -> tuple[str, tuple[PadFn, ...] | None]:
        """The padding TensorFlow applies, and the padding functions applied before it, if any."""
        if isinstance(padding, str):
            if padding.upper() not in ("SAME", "VALID"):
                raise ValueError(
                    f"{utils.describe(self)}: padding must be 'SAME', 'VALID', a function or a "
                    f"sequence of functions, got {padding!r}"
                )
            return padding.upper(), None
        fns = (padding,) if callable(padding) else tuple(padding) if isinstance(padding, Sequence) else ()
        n = self.NUM_SPATIAL
        if len(fns) == 1:
            fns = fns * n
        if len(fns) != n or not all(callable(f) for f in fns):
            raise ValueError(
                f"{utils.describe(self)}: padding must be 'SAME', 'VALID', a function or a sequence "
                f"of 1 or {n} functions, got {padding!r}"
            )
        return "VALID", fns  # the input is padded explicitly, then convolved without padding

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        check_first_inputs(self, inputs)
        for axis, size in self._min_spatial:  # before making variables, which a failed trace would lose
            if inputs.shape[axis] is not None and inputs.shape[axis] < size:
                self._too_small(inputs.shape, axis, size)
        self.input_channels = input_channels = known_input_channels(self, inputs)
        make_variables(self, [*self.kernel_shape, input_channels, self.output_channels], input_channels, inputs.dtype)

    def _explicit_paddings(self) -> list[list[int]] | None:
        """The `tf.pad` paddings the padding functions ask for, or None without them."""
        if self._pad_fns is None:
            return None
        spatial = []
        for fn, k, r in zip(self._pad_fns, self.kernel_shape, self.rate):
            before_after = list(fn((k - 1) * r + 1))  # called with the dilated kernel size
            if len(before_after) != 2:
                raise ValueError(
                    f"{utils.describe(self)}: a padding function must return [before, after], got {before_after!r}"
                )
            spatial.append(before_after)
        none = [[0, 0]]
        return none + spatial + none if self._channel_axis == -1 else none + none + spatial

    def _smallest_inputs(self) -> tuple[tuple[int, int], ...]:
        """(axis, size) for each spatial axis whose input must be at least `size` long.

        The convolution TensorFlow runs is "VALID", unless padding="SAME": each axis,
        after any explicit padding, must hold the dilated kernel. Axes that any input
        satisfies are left out, so with "SAME" the tuple is empty.
        """
        if self._tf_padding == "SAME":
            return ()
        first = 1 if self._channel_axis == -1 else 2
        pads = self._paddings[first : first + self.NUM_SPATIAL] if self._paddings else [[0, 0]] * self.NUM_SPATIAL
        smallest = []
        for i, (k, r, (before, after)) in enumerate(zip(self.kernel_shape, self.rate, pads)):
            size = (k - 1) * r + 1 - before - after
            if size > 1:
                smallest.append((first + i, size))
        return tuple(smallest)

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """Convolves `inputs` [batch, *spatial, channels] (or channels first, per `data_format`).

        Returns:
          [batch, *output_spatial, output_channels] (or channels first).

        Raises:
          ValueError: on the wrong rank or number of input channels, or (when the
            spatial sizes are known statically) inputs too small for the kernel with
            "VALID" padding.
          TypeError: on a dtype other than the first input's.
        """
        self._initialize(inputs)
        shape = inputs.shape
        # One cheap test on the hot path; the detailed checks run only when it fails.
        if (
            inputs.dtype is not self.w.dtype
            or shape.rank != self.NUM_SPATIAL + 2
            or shape[self._channel_axis] != self.input_channels
        ):
            self._check(inputs)
        for axis, size in self._min_spatial:  # empty with "SAME" padding
            if shape[axis] is not None and shape[axis] < size:
                self._too_small(shape, axis, size)
        if self._paddings is not None:
            inputs = tf.pad(inputs, self._paddings)
        return in_supported_layout(self._convolve, inputs, self.data_format)

    def _convolve(self, inputs: tf.Tensor, data_format: str) -> tf.Tensor:
        """The convolution and bias of padded `inputs` laid out as `data_format`."""
        empty = inputs.shape[0] == 0
        if empty:
            # TensorFlow 2.21's oneDNN convolutions (the default on many x86 CPUs) return
            # their input unchanged for an empty batch: convolve one example of zeros for
            # the output's shape, and keep none of it.
            inputs = tf.zeros(tf.concat([[1], tf.shape(inputs)[1:]], 0), inputs.dtype)
        outputs = tf.nn.convolution(
            inputs,
            self.w,
            strides=self.stride,
            padding=self._tf_padding,
            dilations=self.rate,
            data_format=data_format,
        )
        if empty:
            outputs = outputs[:0]
        if self.with_bias:
            outputs = tf.nn.bias_add(outputs, self.b, data_format=data_format)
        return outputs

    def _too_small(self, shape: tf.TensorShape, axis: int, size: int) -> None:
        """Raises the error for inputs whose `axis` is shorter than the "VALID" kernel needs.

        Checked here because TensorFlow's CPU kernel eagerly returns a wrongly shaped
        result in that case, and graphs fail with a message naming neither module nor kernel.
        """
        rate = f" at rate {self.rate}" if max(self.rate) > 1 else ""
        padding = "'VALID'" if self._pad_fns is None else "the padding functions (then 'VALID')"
        raise ValueError(
            f"{utils.describe(self)}: kernel_shape {self.kernel_shape}{rate} with padding {padding} needs "
            f"inputs of size at least {size} on axis {axis}, got shape {shape}"
        )

    def _check(self, inputs: tf.Tensor) -> None:
        check_inputs(self, inputs)


_ARGS_DOC = """

    Args:
      output_channels: number of output channels.
      kernel_shape: kernel size, an int for every spatial axis or one per axis.
      stride: step between applications of the kernel, an int or one per axis.
      rate: dilation rate (holes between kernel taps), an int or one per axis; 1 is an
        ordinary convolution. TensorFlow cannot combine rate > 1 with stride > 1.
      padding: "SAME" (output size = ceil(input size / stride)), "VALID" (no padding),
        or a function, or one function per axis, that takes the dilated kernel size
        and returns [pad_before, pad_after] (Sonnet's `snt.pad.causal` and friends
        fit); the input is then zero-padded that way and convolved "VALID".
      with_bias: whether to add the bias `b` [output_channels].
      w_init: initializer of `w` [*kernel_shape, input_channels, output_channels]. The
        default, as in Sonnet, is `TruncatedNormal(stddev=1/sqrt(fan_in))` with fan_in =
        prod(kernel_shape) * input_channels: a normal cut at two standard deviations,
        whose actual standard deviation is about 0.88/sqrt(fan_in). The 1/sqrt(fan_in)
        scale keeps the outputs' variance near the inputs' for independent zero-mean
        inputs (LeCun et al., 1998, "Efficient BackProp"); the truncation makes it
        about 0.77 times the inputs'.
      b_init: initializer of `b`; zeros by default.
      data_format: {formats}. Both layouts run on every
        device, eagerly, in a `tf.function` and under XLA: channels first runs on the
        device's channels-first kernels where it has them (GPUs; CPUs with oneDNN, in
        float32), else on its channels-last kernels between two transposes
        (`in_supported_layout`).
      name: module name.

    Raises:
      ValueError: on a bad size, padding or data_format, or stride > 1 with rate > 1.
"""


class Conv1D(_ConvND):
    """1-D convolution of [batch, width, channels] inputs."""

    __doc__ += _ARGS_DOC.format(formats='"NWC" (channels last, default) or "NCW"')
    NUM_SPATIAL = 1

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        stride: IntOrSeq = 1,
        rate: IntOrSeq = 1,
        padding: str | PadFn | Sequence[PadFn] = "SAME",
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        data_format: str = "NWC",
        name: str | None = None,
    ):
        super().__init__(
            output_channels, kernel_shape, stride, rate, padding, with_bias, w_init, b_init, data_format, name
        )


class Conv2D(_ConvND):
    """2-D convolution of [batch, height, width, channels] inputs."""

    __doc__ += _ARGS_DOC.format(formats='"NHWC" (channels last, default) or "NCHW"')
    NUM_SPATIAL = 2

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        stride: IntOrSeq = 1,
        rate: IntOrSeq = 1,
        padding: str | PadFn | Sequence[PadFn] = "SAME",
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        data_format: str = "NHWC",
        name: str | None = None,
    ):
        super().__init__(
            output_channels, kernel_shape, stride, rate, padding, with_bias, w_init, b_init, data_format, name
        )


class Conv3D(_ConvND):
    """3-D convolution of [batch, depth, height, width, channels] inputs."""

    __doc__ += _ARGS_DOC.format(formats='"NDHWC" (channels last, default) or "NCDHW"')
    NUM_SPATIAL = 3

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        stride: IntOrSeq = 1,
        rate: IntOrSeq = 1,
        padding: str | PadFn | Sequence[PadFn] = "SAME",
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        data_format: str = "NDHWC",
        name: str | None = None,
    ):
        super().__init__(
            output_channels, kernel_shape, stride, rate, padding, with_bias, w_init, b_init, data_format, name
        )
