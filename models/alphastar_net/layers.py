"""The network's building blocks: gated linear units, residual blocks, FiLM-gated convolutional blocks.

Each is a small `core.Module` with lazily created variables, as in the AlphaStar
supplement's "detailed architecture" (Vinyals et al., Nature 2019).
"""

import tensorflow as tf

import core
from core import utils


class GLU(core.Module):
    """A gated linear unit: `Linear(output_size)(sigmoid(Linear(input_size)(context)) * inputs)`.

    AlphaStar gates the action-type logits and the autoregressive embedding by the
    scalar context (which action types are available, ...) this way, so the context
    can switch parts of the input off.

    Args:
      output_size: size of the outputs.
      name: module name.
    """

    def __init__(self, output_size: int, name: str | None = None):
        super().__init__(name=name)
        self.output_size = utils.positive_int(self, output_size, "output_size")
        self.output = core.Linear(self.output_size, name="output")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        utils.check_min_rank(self, inputs, 2, layout="[batch..., input_size]")
        size = inputs.shape[-1]
        if size is None:
            raise ValueError(f"{utils.describe(self)}: the input size must be known, got shape {inputs.shape}")
        self.gate = core.Linear(size, name="gate")

    def __call__(self, inputs: tf.Tensor, context: tf.Tensor) -> tf.Tensor:
        """Gates `inputs` [batch..., input_size] by `context` [batch..., context_size]."""
        self._initialize(inputs)
        return self.output(tf.sigmoid(self.gate(context)) * inputs)


class ResBlock(core.Module):
    """A pre-normalised residual MLP block: `x + Linear(relu(LN(Linear(relu(LN(x))))))`.

    The action-type head stacks 16 of these at width 256 (layer norm, as the supplement
    says). Normalising before each linear keeps the sum's scale under control however
    many blocks are stacked.

    Args:
      name: module name. The width is the inputs'.
    """

    def __init__(self, name: str | None = None):
        super().__init__(name=name)
        self.norm_0 = core.LayerNorm(-1, create_scale=True, create_offset=True, name="norm_0")
        self.norm_1 = core.LayerNorm(-1, create_scale=True, create_offset=True, name="norm_1")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        utils.check_min_rank(self, inputs, 2, layout="[batch..., size]")
        size = inputs.shape[-1]
        if size is None:
            raise ValueError(f"{utils.describe(self)}: the input size must be known, got shape {inputs.shape}")
        self.linear_0 = core.Linear(size, name="linear_0")
        self.linear_1 = core.Linear(size, name="linear_1")

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """[batch..., size] -> [batch..., size]."""
        self._initialize(inputs)
        h = self.linear_0(tf.nn.relu(self.norm_0(inputs)))
        h = self.linear_1(tf.nn.relu(self.norm_1(h)))
        return inputs + h


class ConvResBlock(core.Module):
    """A residual block of two 3x3 convolutions: `x + conv(relu(conv(relu(x))))`, NHWC.

    The spatial encoder's blocks; their outputs are the map skips the location head
    adds back.

    Args:
      kernel_size: the convolutions' kernel size.
      name: module name. The channel count is the inputs'.
    """

    def __init__(self, kernel_size: int = 3, name: str | None = None):
        super().__init__(name=name)
        self.kernel_size = utils.positive_int(self, kernel_size, "kernel_size")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        utils.check_rank(self, inputs, 4, layout="[batch, height, width, channels]")
        channels = inputs.shape[-1]
        if channels is None:
            raise ValueError(f"{utils.describe(self)}: the channel count must be known, got shape {inputs.shape}")
        self.conv_0 = core.Conv2D(channels, self.kernel_size, name="conv_0")
        self.conv_1 = core.Conv2D(channels, self.kernel_size, name="conv_1")

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """[batch, height, width, channels] -> the same shape."""
        self._initialize(inputs)
        return inputs + self.conv_1(tf.nn.relu(self.conv_0(tf.nn.relu(inputs))))


class FiLMResBlock(core.Module):
    """A residual block of two 3x3 convolutions, each followed by FiLM conditioning on a vector.

    FiLM (Perez et al., 2018, arXiv:1709.07871) scales and shifts every channel by
    amounts computed from the conditioning vector: `h <- (1 + gamma(c)) * h + beta(c)`.
    The location head conditions on the autoregressive embedding this way, so the
    choices already made (action type, selected units) steer where it points. The
    projection to gamma and beta starts at zero, so a fresh block is a plain residual
    block and the conditioning grows in as training finds it useful.

        h = FiLM_0(conv_0(relu(x)), c);  h = FiLM_1(conv_1(relu(h)), c);  out = x + h

    Args:
      kernel_size: the convolutions' kernel size.
      name: module name. The channel count is the inputs'.
    """

    def __init__(self, kernel_size: int = 3, name: str | None = None):
        super().__init__(name=name)
        self.kernel_size = utils.positive_int(self, kernel_size, "kernel_size")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        utils.check_rank(self, inputs, 4, layout="[batch, height, width, channels]")
        channels = inputs.shape[-1]
        if channels is None:
            raise ValueError(f"{utils.describe(self)}: the channel count must be known, got shape {inputs.shape}")
        self.conv_0 = core.Conv2D(channels, self.kernel_size, name="conv_0")
        self.conv_1 = core.Conv2D(channels, self.kernel_size, name="conv_1")
        # gamma and beta of both convolutions from one projection.
        self.film = core.Linear(4 * channels, w_init=core.initializers.Zeros(), name="film")

    def __call__(self, inputs: tf.Tensor, conditioning: tf.Tensor) -> tf.Tensor:
        """Applies the block to `inputs` [batch, height, width, channels] under `conditioning` [batch, size]."""
        self._initialize(inputs)
        utils.check_rank(self, conditioning, 2, what="conditioning", layout="[batch, size]")
        gamma_0, beta_0, gamma_1, beta_1 = tf.split(self.film(conditioning)[:, None, None, :], 4, axis=-1)
        h = self.conv_0(tf.nn.relu(inputs))
        h = (1.0 + gamma_0) * h + beta_0
        h = self.conv_1(tf.nn.relu(h))
        h = (1.0 + gamma_1) * h + beta_1
        return inputs + h
