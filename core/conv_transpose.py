"""Transposed convolutions ("deconvolutions"): Conv1DTranspose, Conv2DTranspose, Conv3DTranspose.

Each is the gradient of the matching convolution with respect to its input: it maps a
convolution's output size back to its input size, upsampling by `stride`.
"""

from collections.abc import Sequence

import tensorflow as tf

from core import initializers, utils
from core.conv import (
    IntOrSeq,
    channel_axis,
    check_first_inputs,
    check_inputs,
    dilate_kernel,
    in_supported_layout,
    known_input_channels,
    make_variables,
    per_axis,
    runs_natively,
)
from core.module import Module, once


class _ConvNDTranspose(Module):
    """Shared body of Conv1D/2D/3DTranspose; subclasses fix the number of spatial axes."""

    NUM_SPATIAL: int = 0  # set by subclasses

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        output_shape: IntOrSeq | tf.TensorShape | None,
        stride: IntOrSeq,
        rate: IntOrSeq,
        padding: str,
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
        if isinstance(output_shape, tf.TensorShape):
            output_shape = output_shape.as_list()
        if output_shape is not None:
            output_shape = per_axis(self, output_shape, n, "output_shape")
        self.output_shape = output_shape
        self.stride = per_axis(self, stride, n, "stride")
        self.rate = per_axis(self, rate, n, "rate")
        if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"{utils.describe(self)}: padding must be 'SAME' or 'VALID', got {padding!r}")
        self.padding = padding.upper()
        self._channel_axis = channel_axis(self, data_format, n)
        self.data_format = data_format
        if not with_bias and b_init is not None:
            raise ValueError(f"{utils.describe(self)}: b_init given but with_bias=False")
        self.with_bias = with_bias
        self.w_init = w_init
        self.b_init = b_init
        # The dilated kernel size along each axis.
        self._effective_kernel = tuple((k - 1) * r + 1 for k, r in zip(self.kernel_shape, self.rate))

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        check_first_inputs(self, inputs)
        self.input_channels = input_channels = known_input_channels(self, inputs)
        # Every input dimension but the batch, when `output_shape` fixes them: the hot
        # path compares them all at once.
        self._input_tail = None
        if self.output_shape is not None:
            spatial = self._input_spatial()
            self._input_tail = (*spatial, input_channels) if self._channel_axis == -1 else (input_channels, *spatial)
        self._check_output_shape(inputs)
        # Stored [*kernel, out, in]: the layout of the convolution this one transposes.
        make_variables(self, [*self.kernel_shape, self.output_channels, input_channels], input_channels, inputs.dtype)

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """Applies the transposed convolution to `inputs` [batch, *spatial, channels] (or channels first).

        Returns:
          [batch, *output_shape, output_channels] (or channels first). Without an
          `output_shape`, each spatial size is input * stride for "SAME" padding and
          input * stride + dilated kernel - 1 for "VALID", as in Sonnet.

        Raises:
          ValueError: on the wrong rank or number of input channels, or an input size
            that `output_shape` cannot come from.
          TypeError: on a dtype other than the first input's.
        """
        self._initialize(inputs)
        shape = inputs.shape
        # One cheap test on the hot path; the detailed checks run only when it fails.
        if (
            inputs.dtype is not self.w.dtype
            or shape.rank != self.NUM_SPATIAL + 2
            or (
                shape[self._channel_axis] != self.input_channels
                if self._input_tail is None
                else tuple(shape.as_list()[1:]) != self._input_tail
            )
        ):
            self._check(inputs)
        return in_supported_layout(self._transpose, inputs, self.data_format)

    def _transpose(self, inputs: tf.Tensor, data_format: str) -> tf.Tensor:
        """The transposed convolution and bias of `inputs` laid out as `data_format`."""
        w, rate = self.w, self.rate
        if max(rate) > 1 and (
            max(self.stride) > 1 or not runs_natively(self.NUM_SPATIAL, inputs.dtype, data_format, True)
        ):
            w, rate = dilate_kernel(w, rate), 1  # the same convolution, on kernels every device has
        outputs = tf.nn.conv_transpose(
            inputs,
            w,
            output_shape=self._full_output_shape(inputs, data_format),
            strides=self.stride,
            padding=self.padding,
            data_format=data_format,
            dilations=rate,
        )
        if self.with_bias:
            outputs = tf.nn.bias_add(outputs, self.b, data_format=data_format)
        return outputs

    def _spatial(self, shape: Sequence, data_format: str | None = None) -> Sequence:
        """The spatial part of `shape`, laid out as `data_format` (by default the module's)."""
        return shape[1:-1] if (data_format or self.data_format)[-1] == "C" else shape[2:]

    def _full_output_shape(self, inputs: tf.Tensor, data_format: str) -> list | tf.Tensor:
        static = inputs.shape
        spatial = self.output_shape
        if spatial is None:
            sizes = self._spatial(static.as_list(), data_format)
            if any(s is None for s in sizes):
                sizes = self._spatial(tf.unstack(tf.shape(inputs)), data_format)
            valid = self.padding == "VALID"
            spatial = [s * st + (k - 1 if valid else 0) for s, st, k in zip(sizes, self.stride, self._effective_kernel)]
        batch = static[0] if static[0] is not None else tf.shape(inputs)[0]
        channels = [self.output_channels]
        dims = [batch, *spatial, *channels] if data_format[-1] == "C" else [batch, *channels, *spatial]
        return dims if all(isinstance(d, int) for d in dims) else tf.stack(dims)

    def _input_spatial(self) -> list[int]:
        """The input's spatial size that a convolution of an `output_shape` input gives."""
        valid = self.padding == "VALID"
        # A convolution maps size o to ceil(o / s) ("SAME") or ceil((o - k + 1) / s) ("VALID").
        return [
            -(-(o - (k - 1 if valid else 0)) // s)
            for o, k, s in zip(self.output_shape, self._effective_kernel, self.stride)
        ]

    def _check_output_shape(self, inputs: tf.Tensor) -> None:
        """Raises unless a convolution of an `output_shape` input would give `inputs`' size."""
        if self.output_shape is None:
            return
        sizes = self._spatial(inputs.shape.as_list())
        expected = self._input_spatial()
        if any(g is not None and g != e for g, e in zip(sizes, expected)):
            raise ValueError(
                f"{utils.describe(self)}: output_shape {list(self.output_shape)} with stride "
                f"{list(self.stride)} and {self.padding} padding needs inputs of spatial size "
                f"{expected}, got shape {inputs.shape}"
            )

    def _check(self, inputs: tf.Tensor) -> None:
        check_inputs(self, inputs)
        self._check_output_shape(inputs)


_ARGS_DOC = """

    Args:
      output_channels: number of output channels.
      kernel_shape: kernel size, an int for every spatial axis or one per axis.
      output_shape: the spatial size of the output, an int for every axis or one per
        axis (batch and channels excluded). Several output sizes give the same input
        size when stride > 1; this picks one. None computes it from the input (see
        `__call__`).
      stride: upsampling factor, an int or one per axis.
      rate: dilation rate of the kernel, an int or one per axis. Where the device has
        no dilated transposed convolution (TensorFlow's CPU kernels in channels-last
        layout, with or without oneDNN), or with stride > 1 too, the kernel is dilated
        explicitly (zeros between its taps) and convolved at rate 1: the same result,
        for more arithmetic.
      padding: "SAME" or "VALID": the padding of the convolution being transposed.
      with_bias: whether to add the bias `b` [output_channels].
      w_init: initializer of `w` [*kernel_shape, output_channels, input_channels]. The
        default is a truncated normal with standard deviation
        1/sqrt(prod(kernel_shape) * input_channels), which keeps the output's variance
        near the input's for zero-centred inputs (Ioffe & Szegedy, 2015,
        arXiv:1502.03167), as in Sonnet.
      b_init: initializer of `b`; zeros by default.
      data_format: {formats}. Both layouts run on every
        device, eagerly, in a `tf.function` and under XLA; see `core.Conv2D`.
      name: module name.

    Raises:
      ValueError: on a bad size, output_shape, padding or data_format.
"""


class Conv1DTranspose(_ConvNDTranspose):
    """1-D transposed convolution of [batch, width, channels] inputs."""

    __doc__ += _ARGS_DOC.format(formats='"NWC" (channels last, default) or "NCW"')
    NUM_SPATIAL = 1

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        output_shape: IntOrSeq | tf.TensorShape | None = None,
        stride: IntOrSeq = 1,
        rate: IntOrSeq = 1,
        padding: str = "SAME",
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        data_format: str = "NWC",
        name: str | None = None,
    ):
        super().__init__(
            output_channels,
            kernel_shape,
            output_shape,
            stride,
            rate,
            padding,
            with_bias,
            w_init,
            b_init,
            data_format,
            name,
        )


class Conv2DTranspose(_ConvNDTranspose):
    """2-D transposed convolution of [batch, height, width, channels] inputs."""

    __doc__ += _ARGS_DOC.format(formats='"NHWC" (channels last, default) or "NCHW"')
    NUM_SPATIAL = 2

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        output_shape: IntOrSeq | tf.TensorShape | None = None,
        stride: IntOrSeq = 1,
        rate: IntOrSeq = 1,
        padding: str = "SAME",
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        data_format: str = "NHWC",
        name: str | None = None,
    ):
        super().__init__(
            output_channels,
            kernel_shape,
            output_shape,
            stride,
            rate,
            padding,
            with_bias,
            w_init,
            b_init,
            data_format,
            name,
        )


class Conv3DTranspose(_ConvNDTranspose):
    """3-D transposed convolution of [batch, depth, height, width, channels] inputs."""

    __doc__ += _ARGS_DOC.format(formats='"NDHWC" (channels last, default) or "NCDHW"')
    NUM_SPATIAL = 3

    def __init__(
        self,
        output_channels: int,
        kernel_shape: IntOrSeq,
        output_shape: IntOrSeq | tf.TensorShape | None = None,
        stride: IntOrSeq = 1,
        rate: IntOrSeq = 1,
        padding: str = "SAME",
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        data_format: str = "NDHWC",
        name: str | None = None,
    ):
        super().__init__(
            output_channels,
            kernel_shape,
            output_shape,
            stride,
            rate,
            padding,
            with_bias,
            w_init,
            b_init,
            data_format,
            name,
        )
