"""Spectrally normalised layers: a linear map, a convolution and an embedding.

Each holds its weight as a plain variable and a `core.SpectralNorm`, and uses
`weight / sigma` (sigma: the power-iteration estimate of the weight's largest singular
value; Miyato et al., 2018) wherever it would use the weight. Being linear in the
weight, each computes that as its plain output divided by sigma, which never forms the
normalised weight or its gradient (`core.SpectralNorm.estimate` gives what that saves
in BigGAN's train step at 128x128). A training call
(`is_training=True`) advances the power iteration by one step and stores it; an
inference call reuses the stored vector and changes nothing, as in BigGAN (Brock et al.,
2019) and its reference code.

Weights start orthogonal (Saxe et al., 2014), BigGAN's initialisation: with spectral
normalisation every singular value of an orthogonal weight is already one, so training
starts with no layer rescaled.

`power_iteration()` advances the estimate without a forward pass. A training step that
compiles each replica's forward and backward pass (XLA) under a multi-replica strategy
calls it first, outside the compiled part, and then runs the layers with
`is_training=False`: the stored vector is then the one a training call would have made,
so the outputs are the same, and the compiled part writes no replicated state (which
XLA, compiling for one device, cannot do).
"""

import tensorflow as tf

import core


def _orthogonal() -> core.initializers.Initializer:
    return core.initializers.Orthogonal()


class _SpectralLayer(core.Module):
    """Base of the layers here: the weight `w`, its spectral norm and the power-iteration step."""

    def _make_weight(self, shape: list[int], dtype: tf.DType) -> None:
        self.w = tf.Variable(self.w_init(shape, dtype), name="w")

    def normalized_weight(self, is_training: bool | tf.Tensor) -> tf.Tensor:
        """`w / sigma`; a training call advances the power iteration first."""
        return self.spectral_norm(self.w, is_training)

    def sigma(self, is_training: bool | tf.Tensor) -> tf.Tensor:
        """sigma of `w` (`core.SpectralNorm.estimate`); a training call advances the power iteration first."""
        return self.spectral_norm.estimate(self.w, is_training)

    def power_iteration(self) -> None:
        """One power-iteration step on `w`, stored (the weight itself is unused, and pruned in graphs)."""
        self.spectral_norm(self.w, is_training=True)


class SNLinear(_SpectralLayer):
    """`outputs = inputs @ (w / sigma) + b` over the last axis.

    Args:
      output_size: size of the output's last axis.
      with_bias: whether to add a bias `b` (zeros at first).
      w_init: initializer of `w` [input_size, output_size]; orthogonal by default.
      name: module name.
    """

    def __init__(
        self,
        output_size: int,
        with_bias: bool = True,
        w_init: core.initializers.Initializer | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.output_size = core.utils.positive_int(self, output_size, "output_size")
        self.with_bias = bool(with_bias)
        self.w_init = w_init or _orthogonal()
        self.spectral_norm = core.SpectralNorm(name="spectral_norm")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        core.utils.check_rank(self, inputs, 2, layout="[batch, input_size]")
        core.utils.check_floating(self, inputs)
        if inputs.shape[-1] is None:
            raise ValueError(f"{core.utils.describe(self)}: the input size must be known, got shape {inputs.shape}")
        self.input_size = inputs.shape[-1]
        self._make_weight([self.input_size, self.output_size], inputs.dtype)
        if self.with_bias:
            self.b = tf.Variable(tf.zeros([self.output_size], inputs.dtype), name="b")

    def __call__(self, inputs: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """Maps `inputs` [batch, input_size] to [batch, output_size]."""
        self._initialize(inputs)
        if inputs.dtype != self.w.dtype or inputs.shape.rank != 2 or inputs.shape[-1] != self.input_size:
            core.utils.check_dtype(self, inputs, self.w.dtype)
            core.utils.check_rank(self, inputs, 2, layout="[batch, input_size]")
            core.utils.check_size(self, inputs, -1, self.input_size, meaning="input size")
        outputs = tf.matmul(inputs, self.w) / self.sigma(is_training)
        return outputs + self.b if self.with_bias else outputs


class SNConv2D(_SpectralLayer):
    """A stride-1 "SAME" 2-D convolution (NHWC) with the kernel `w / sigma`.

    sigma is taken of the kernel viewed as a [kh * kw * in, out] matrix, as BigGAN does.

    Args:
      output_channels: channels of the output.
      kernel_shape: the (square) kernel's size: 3, or 1 for a pointwise convolution.
      with_bias: whether to add a bias `b` (zeros at first).
      w_init: initializer of `w` [k, k, in, out]; orthogonal by default.
      name: module name.
    """

    def __init__(
        self,
        output_channels: int,
        kernel_shape: int = 3,
        with_bias: bool = True,
        w_init: core.initializers.Initializer | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.output_channels = core.utils.positive_int(self, output_channels, "output_channels")
        self.kernel_shape = core.utils.positive_int(self, kernel_shape, "kernel_shape")
        self.with_bias = bool(with_bias)
        self.w_init = w_init or _orthogonal()
        self.spectral_norm = core.SpectralNorm(name="spectral_norm")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        core.utils.check_rank(self, inputs, 4, layout="[batch, height, width, channels]")
        core.utils.check_floating(self, inputs)
        if inputs.shape[-1] is None:
            raise ValueError(f"{core.utils.describe(self)}: the channel count must be known, got shape {inputs.shape}")
        self.input_channels = inputs.shape[-1]
        k = self.kernel_shape
        self._make_weight([k, k, self.input_channels, self.output_channels], inputs.dtype)
        if self.with_bias:
            self.b = tf.Variable(tf.zeros([self.output_channels], inputs.dtype), name="b")

    def __call__(self, inputs: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """Convolves `inputs` [batch, height, width, in]; returns [batch, height, width, out]."""
        self._initialize(inputs)
        if inputs.dtype != self.w.dtype or inputs.shape.rank != 4 or inputs.shape[-1] != self.input_channels:
            core.utils.check_dtype(self, inputs, self.w.dtype)
            core.utils.check_rank(self, inputs, 4, layout="[batch, height, width, channels]")
            core.utils.check_size(self, inputs, -1, self.input_channels, meaning="channel count")
        outputs = tf.nn.conv2d(inputs, self.w, strides=1, padding="SAME") / self.sigma(is_training)
        return tf.nn.bias_add(outputs, self.b) if self.with_bias else outputs


class SNEmbed(_SpectralLayer):
    """An embedding table `w` [vocab_size, embed_dim] looked up as `w / sigma`.

    Args:
      vocab_size: number of rows (classes).
      embed_dim: size of each row.
      dtype: dtype of the table (ids are integers, so it cannot come from the input).
      w_init: initializer of the table; orthogonal by default.
      name: module name.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        dtype: tf.DType = tf.float32,
        w_init: core.initializers.Initializer | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.vocab_size = core.utils.positive_int(self, vocab_size, "vocab_size")
        self.embed_dim = core.utils.positive_int(self, embed_dim, "embed_dim")
        self.dtype = tf.as_dtype(dtype)
        self.w_init = w_init or _orthogonal()
        self.spectral_norm = core.SpectralNorm(name="spectral_norm")

    @core.once
    def _initialize(self) -> None:
        self._make_weight([self.vocab_size, self.embed_dim], self.dtype)

    def __call__(self, ids: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """The rows of `ids` (integers in [0, vocab_size)): [..., embed_dim]."""
        self._initialize()
        return tf.gather(self.w, ids) / self.sigma(is_training)

    def power_iteration(self) -> None:
        self._initialize()
        super().power_iteration()


# Every layer with a spectral norm of its weight (what `power_iteration` of a network visits).
SPECTRAL_LAYERS = (SNLinear, SNConv2D, SNEmbed)
