"""BigGAN's generator and discriminator (Brock, Donahue & Simonyan, ICLR 2019, arXiv:1809.11096).

The generator maps a latent `z` and a class id `y` to an image in [-1, 1]:

    z -> split into (blocks + 1) equal chunks z_0, z_1, ...    (hierarchical latent)
    c_i = concat(shared(y), z_i)       shared: one class embedding for every block
    h = SNLinear(z_0) reshaped to [4, 4, 16 ch]  (ch * the plan's first width)
    h = GBlock_i(h, c_i) for each block, doubling the resolution; a non-local block
        after the block whose output has `attention_resolution`
    image = tanh(SNConv3x3(ReLU(BN(h))))   (the last BN is unconditional)

    GBlock(x, c): BN(x, c) -> ReLU -> up x2 -> conv3x3 -> BN(., c) -> ReLU -> conv3x3,
                  plus the shortcut up x2 -> conv1x1
    BN(x, c) = BatchNorm(x) * (1 + SNLinear(c)) + SNLinear(c)   (class-conditional)

The discriminator is a projection discriminator (Miyato & Koyama, 2018):

    h = DBlock_i(h) for each block (all but the last halve the resolution); a non-local
        block after the block whose output has `attention_resolution`
    h = sum over height and width of ReLU(h)
    logit = SNLinear(h) + sum(SNEmbed(y) * h)

    DBlock(x): [ReLU, except in the first block] -> conv3x3 -> ReLU -> conv3x3 -> avgpool2,
               plus a conv1x1 (and avgpool2) shortcut where the width or the resolution changes

Every weight is spectrally normalised (one power-iteration step per training call, none
in inference; `layers.py`) and starts orthogonal, except the generator's shared class
embedding, which BigGAN leaves unnormalised (its reference code notes that normalising
it hurt the generator). Channel widths follow the published plans (`GENERATOR_PLANS`,
`DISCRIMINATOR_PLANS`), so that at 128x128, ch 96 and 1,000 classes the trainable
parameters number exactly the published 70,433,988 (G) and 87,982,370 (D).

Where the reference code applies a 1x1 convolution after an up- or down-sampling (the
shortcuts), it is applied here on the smaller side: a pointwise linear map commutes with
nearest-neighbour upsampling and with average pooling, so the result is the same, for a
quarter of the work.
"""

import numbers

import tensorflow as tf

import core
from models.biggan import layers

# Channel widths as multiples of ch. Generator: (width of the seed, output width of each
# block); each block doubles the resolution from the 4x4 seed. BigGAN-PyTorch's plans.
GENERATOR_PLANS = {
    32: (4, (4, 4, 4)),
    64: (16, (16, 8, 4, 2)),
    128: (16, (16, 8, 4, 2, 1)),
    256: (16, (16, 8, 8, 4, 2, 1)),
    512: (16, (16, 8, 8, 4, 2, 1, 1)),
}
# Discriminator: (output width of each block, how many of the first blocks halve the
# resolution); the input of each block is the output of the previous (3 for the first).
# 32 to 256: BigGAN-PyTorch's plans; 512: the paper's (and compare_gan's).
DISCRIMINATOR_PLANS = {
    32: ((4, 4, 4, 4), 2),
    64: ((1, 2, 4, 8, 16), 4),
    128: ((1, 2, 4, 8, 16, 16), 5),
    256: ((1, 2, 4, 8, 8, 16, 16), 6),
    512: ((1, 1, 2, 4, 8, 8, 16, 16), 7),
}

# Batch-norm settings of BigGAN-PyTorch: eps 1e-5, momentum 0.1 (a decay of 0.9).
BN_EPS = 1e-5
BN_DECAY = 0.9
SEED_SIZE = 4


def _check_choice(module: core.Module, value, what: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{core.utils.describe(module)}: {what} must be one of {sorted(choices)}, got {value!r}")


def _attention_index(module: core.Module, attention_resolution, resolutions: list[int]) -> int | None:
    """The block after which the non-local block goes, or None."""
    if attention_resolution is None:
        return None
    if attention_resolution not in resolutions:
        raise ValueError(
            f"{core.utils.describe(module)}: attention_resolution {attention_resolution!r} is not the output "
            f"resolution of any block ({resolutions}); give one of them, or None for no attention"
        )
    return resolutions.index(attention_resolution)


def upsample(x: tf.Tensor) -> tf.Tensor:
    """Nearest-neighbour upsampling by 2 of [B, H, W, C] images.

    By tiling, not `tf.image.resize`: XLA has no kernel for the latter's gradient.
    """
    _, height, width, channels = x.shape
    tiled = tf.tile(tf.reshape(x, [-1, height, 1, width, 1, channels]), [1, 1, 2, 1, 2, 1])
    return tf.reshape(tiled, [-1, 2 * height, 2 * width, channels])


def downsample(x: tf.Tensor) -> tf.Tensor:
    """2x2 average pooling of [B, H, W, C] images."""
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


class ConditionalBatchNorm(core.Module):
    """Class-conditional batch norm: `BatchNorm(x) * (1 + SNLinear(c)) + SNLinear(c)`.

    The normalisation is `core.BatchNorm` (or `core.CrossReplicaBatchNorm`) without
    parameters of its own; the per-example gain and bias, bias-free spectrally
    normalised linear maps of the condition `c`, are given to it at call time.

    Args:
      cross_replica: normalise with the statistics of the whole batch across replicas.
      name: module name.
    """

    def __init__(self, cross_replica: bool = False, name: str | None = None):
        super().__init__(name=name)
        norm = core.CrossReplicaBatchNorm if cross_replica else core.BatchNorm
        self.batch_norm = norm(False, False, decay_rate=BN_DECAY, eps=BN_EPS, name="batch_norm")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        channels = inputs.shape[-1]
        self.gain = layers.SNLinear(channels, with_bias=False, name="gain")
        self.bias = layers.SNLinear(channels, with_bias=False, name="bias")

    def __call__(
        self,
        inputs: tf.Tensor,
        condition: tf.Tensor,
        is_training: bool | tf.Tensor,
        test_local_stats: bool | tf.Tensor = False,
    ) -> tf.Tensor:
        """Normalises `inputs` [B, H, W, C] given `condition` [B, D]; the flags as `core.BatchNorm`'s."""
        self._initialize(inputs)
        gain = 1.0 + self.gain(condition, is_training)
        bias = self.bias(condition, is_training)
        return self.batch_norm(
            inputs, is_training, test_local_stats, scale=gain[:, None, None, :], offset=bias[:, None, None, :]
        )


class NonLocalBlock(core.Module):
    """Self-attention over the positions of an image (Zhang et al., 2019, SAGAN; Wang et al., 2018).

    With C input channels: theta = conv1x1(x) [C/8], phi = maxpool2(conv1x1(x)) [C/8],
    g = maxpool2(conv1x1(x)) [C/2]; beta = softmax(theta phi^T) over the pooled
    positions; outputs `x + gamma * conv1x1(beta g)` [C]. The 1x1 convolutions are
    spectrally normalised and bias-free; `gamma` starts at 0, so the block starts as
    the identity.
    """

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        core.utils.check_rank(self, inputs, 4, layout="[batch, height, width, channels]")
        _, height, width, channels = inputs.shape
        if channels is None or channels < 8:
            raise ValueError(f"{core.utils.describe(self)}: needs at least 8 channels, got shape {inputs.shape}")
        if height is None or width is None or height % 2 or width % 2:
            raise ValueError(f"{core.utils.describe(self)}: needs even, known height and width, got {inputs.shape}")
        self.theta = layers.SNConv2D(channels // 8, 1, with_bias=False, name="theta")
        self.phi = layers.SNConv2D(channels // 8, 1, with_bias=False, name="phi")
        self.g = layers.SNConv2D(channels // 2, 1, with_bias=False, name="g")
        self.o = layers.SNConv2D(channels, 1, with_bias=False, name="o")
        self.gamma = tf.Variable(tf.zeros([], inputs.dtype), name="gamma")

    def __call__(self, inputs: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        self._initialize(inputs)
        _, height, width, channels = inputs.shape
        positions, pooled = height * width, height * width // 4
        theta = tf.reshape(self.theta(inputs, is_training), [-1, positions, channels // 8])
        phi = tf.reshape(tf.nn.max_pool2d(self.phi(inputs, is_training), 2, 2, "VALID"), [-1, pooled, channels // 8])
        g = tf.reshape(tf.nn.max_pool2d(self.g(inputs, is_training), 2, 2, "VALID"), [-1, pooled, channels // 2])
        beta = tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True), axis=-1)
        attended = tf.reshape(tf.matmul(beta, g), [-1, height, width, channels // 2])
        return inputs + self.gamma * self.o(attended, is_training)


class GBlock(core.Module):
    """The generator's residual block: doubles the resolution, conditioned by `condition`.

    Args:
      output_channels: channels of the output.
      cross_replica: its batch norms use the statistics of the whole batch across replicas.
      name: module name.
    """

    def __init__(self, output_channels: int, cross_replica: bool = False, name: str | None = None):
        super().__init__(name=name)
        self.output_channels = core.utils.positive_int(self, output_channels, "output_channels")
        self.bn1 = ConditionalBatchNorm(cross_replica, name="bn1")
        self.conv1 = layers.SNConv2D(output_channels, 3, name="conv1")
        self.bn2 = ConditionalBatchNorm(cross_replica, name="bn2")
        self.conv2 = layers.SNConv2D(output_channels, 3, name="conv2")
        self.conv_shortcut = layers.SNConv2D(output_channels, 1, name="conv_shortcut")

    def __call__(
        self,
        inputs: tf.Tensor,
        condition: tf.Tensor,
        is_training: bool | tf.Tensor,
        test_local_stats: bool | tf.Tensor = False,
    ) -> tf.Tensor:
        h = tf.nn.relu(self.bn1(inputs, condition, is_training, test_local_stats))
        h = self.conv1(upsample(h), is_training)
        h = tf.nn.relu(self.bn2(h, condition, is_training, test_local_stats))
        h = self.conv2(h, is_training)
        return h + upsample(self.conv_shortcut(inputs, is_training))


class DBlock(core.Module):
    """The discriminator's residual block.

    Args:
      output_channels: channels of the output.
      downsample: halve the resolution (2x2 average pooling).
      preactivation: start with a ReLU (every block but the first: the first sees the
        image itself).
      name: module name.
    """

    def __init__(
        self, output_channels: int, downsample: bool = True, preactivation: bool = True, name: str | None = None
    ):
        super().__init__(name=name)
        self.output_channels = core.utils.positive_int(self, output_channels, "output_channels")
        self.downsample = bool(downsample)
        self.preactivation = bool(preactivation)
        self.conv1 = layers.SNConv2D(output_channels, 3, name="conv1")
        self.conv2 = layers.SNConv2D(output_channels, 3, name="conv2")

    @core.once
    def _initialize(self, inputs: tf.Tensor) -> None:
        # A learnt shortcut only where the identity does not fit.
        self.conv_shortcut = None
        if self.downsample or inputs.shape[-1] != self.output_channels:
            self.conv_shortcut = layers.SNConv2D(self.output_channels, 1, name="conv_shortcut")

    def __call__(self, inputs: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        self._initialize(inputs)
        h = tf.nn.relu(inputs) if self.preactivation else inputs
        h = self.conv2(tf.nn.relu(self.conv1(h, is_training)), is_training)
        shortcut = inputs
        if self.downsample:
            h, shortcut = downsample(h), downsample(shortcut)
        if self.conv_shortcut is not None:
            shortcut = self.conv_shortcut(shortcut, is_training)
        return h + shortcut


def _check_int(module, value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{core.utils.describe(module)}: {what} must be a positive integer, got {value!r}")
    return int(value)


class _Network(core.Module):
    """What the generator and the discriminator share: advancing their spectral norms."""

    def power_iteration(self) -> None:
        """Advances every spectral norm's power iteration by one step, with no forward pass.

        A training call does this itself; a step that compiles each replica's
        computation calls it first, outside the compiled part, then calls the network
        with `is_training=False` (see `layers.py`). The network must have been called once.
        """
        for module in self.submodules:
            if isinstance(module, layers.SPECTRAL_LAYERS):
                module.power_iteration()


class Generator(_Network):
    """BigGAN's class-conditional generator: `G(z, y, is_training)` -> images in [-1, 1].

    Args:
      ch: the channel width multiplier (96 in the paper's 128x128 model, 64 at 32x32).
      resolution: side of the square output image: 32, 64, 128, 256 or 512.
      num_classes: number of classes.
      dim_z: size of the latent; it is split into (blocks + 1) equal chunks, so it must
        be divisible by that (6 chunks of 20 at 128; the paper takes 140 at 256 and 160
        at 512).
      shared_dim: size of the shared class embedding.
      attention_resolution: the output resolution of the block followed by the
        non-local block, or None for none.
      cross_replica: batch norms use the statistics of the whole batch across the
        replicas of a `tf.distribute` strategy (`core.CrossReplicaBatchNorm`).
      name: module name.
    """

    def __init__(
        self,
        ch: int = 96,
        resolution: int = 128,
        num_classes: int = 1000,
        dim_z: int = 120,
        shared_dim: int = 128,
        attention_resolution: int | None = 64,
        cross_replica: bool = False,
        name: str | None = "generator",
    ):
        super().__init__(name=name)
        self.ch = _check_int(self, ch, "ch")
        _check_choice(self, resolution, "resolution", GENERATOR_PLANS)
        self.resolution = resolution
        self.num_classes = _check_int(self, num_classes, "num_classes")
        self.dim_z = _check_int(self, dim_z, "dim_z")
        self.shared_dim = _check_int(self, shared_dim, "shared_dim")
        self.cross_replica = bool(cross_replica)
        seed, widths = GENERATOR_PLANS[resolution]
        self.num_chunks = len(widths) + 1
        if dim_z % self.num_chunks:
            raise ValueError(
                f"{core.utils.describe(self)}: dim_z {dim_z} does not split into {self.num_chunks} equal chunks "
                f"(one per block, plus the seed's) at resolution {resolution}; give a multiple of {self.num_chunks}"
            )
        self.chunk_size = dim_z // self.num_chunks
        resolutions = [SEED_SIZE * 2 ** (i + 1) for i in range(len(widths))]
        self.attention_resolution = attention_resolution
        self._attention_index = _attention_index(self, attention_resolution, resolutions)
        self.seed_channels = seed * ch
        self.linear = layers.SNLinear(SEED_SIZE * SEED_SIZE * self.seed_channels, name="linear")
        self.blocks = [GBlock(w * ch, cross_replica, name=f"block_{i}") for i, w in enumerate(widths)]
        self.attention = None if self._attention_index is None else NonLocalBlock(name="attention")
        norm = core.CrossReplicaBatchNorm if cross_replica else core.BatchNorm
        self.output_bn = norm(True, True, decay_rate=BN_DECAY, eps=BN_EPS, name="output_bn")
        self.output_conv = layers.SNConv2D(3, 3, name="output_conv")

    @core.once
    def _initialize(self, z: tf.Tensor) -> None:
        # The table's dtype follows the latent's; its lookups are dense gradients (the
        # table is small, and dense gradients all-reduce in one piece).
        self.shared = core.Embed(
            self.num_classes,
            self.shared_dim,
            densify_gradients=True,
            initializer=core.initializers.Orthogonal(),
            dtype=z.dtype,
            name="shared",
        )

    def __call__(
        self,
        z: tf.Tensor,
        y: tf.Tensor,
        is_training: bool | tf.Tensor,
        test_local_stats: bool | tf.Tensor = False,
    ) -> tf.Tensor:
        """Generates images.

        Args:
          z: float [B, dim_z], the latent (a standard normal, or truncated; see
            `sampling.truncated_normal`).
          y: int [B], class ids in [0, num_classes).
          is_training: batch norms normalise with the batch's statistics and update
            their moving averages; spectral norms advance their power iteration.
          test_local_stats: when not training, batch norms still normalise with the
            batch's statistics (updating nothing); spectral norms use their stored
            vectors either way. With `power_iteration()` called first, this computes
            what a training call computes without writing any state.

        Returns:
          [B, resolution, resolution, 3] images in [-1, 1], of `z`'s dtype.
        """
        z, y = tf.convert_to_tensor(z), tf.convert_to_tensor(y)
        self._check_inputs(z, y)
        self._initialize(z)
        chunks = tf.split(z, self.num_chunks, axis=1)
        shared = self.shared(y)
        h = self.linear(chunks[0], is_training)
        h = tf.reshape(h, [-1, SEED_SIZE, SEED_SIZE, self.seed_channels])
        for i, block in enumerate(self.blocks):
            h = block(h, tf.concat([shared, chunks[i + 1]], axis=1), is_training, test_local_stats)
            if i == self._attention_index:
                h = self.attention(h, is_training)
        h = tf.nn.relu(self.output_bn(h, is_training, test_local_stats))
        return tf.tanh(self.output_conv(h, is_training))

    def _check_inputs(self, z, y) -> None:
        who = core.utils.describe(self)
        core.utils.check_rank(self, z, 2, what="z", layout="[batch, dim_z]")
        core.utils.check_floating(self, z, what="z")
        core.utils.check_size(self, z, 1, self.dim_z, what="z", meaning="size (dim_z)")
        core.utils.check_rank(self, y, 1, what="y", layout="[batch] class ids")
        if not tf.as_dtype(y.dtype).is_integer:
            raise TypeError(f"{who}: y must be integer class ids, got dtype {tf.as_dtype(y.dtype).name}")
        if z.shape[0] is not None and y.shape[0] is not None and z.shape[0] != y.shape[0]:
            raise ValueError(f"{who}: z and y must have the same batch size, got {z.shape} and {y.shape}")


class Discriminator(_Network):
    """BigGAN's projection discriminator: `D(images, y, is_training)` -> logits [B].

    Args:
      ch: the channel width multiplier.
      resolution: side of the square input images: 32, 64, 128, 256 or 512.
      num_classes: number of classes.
      attention_resolution: the output resolution of the block followed by the
        non-local block, or None for none.
      name: module name.
    """

    def __init__(
        self,
        ch: int = 96,
        resolution: int = 128,
        num_classes: int = 1000,
        attention_resolution: int | None = 64,
        name: str | None = "discriminator",
    ):
        super().__init__(name=name)
        self.ch = _check_int(self, ch, "ch")
        _check_choice(self, resolution, "resolution", DISCRIMINATOR_PLANS)
        self.resolution = resolution
        self.num_classes = _check_int(self, num_classes, "num_classes")
        widths, downsamples = DISCRIMINATOR_PLANS[resolution]
        resolutions = [resolution // 2 ** min(i + 1, downsamples) for i in range(len(widths))]
        self.attention_resolution = attention_resolution
        self._attention_index = _attention_index(self, attention_resolution, resolutions)
        self.blocks = [
            DBlock(w * ch, downsample=i < downsamples, preactivation=i > 0, name=f"block_{i}")
            for i, w in enumerate(widths)
        ]
        self.attention = None if self._attention_index is None else NonLocalBlock(name="attention")
        self.output_channels = widths[-1] * ch
        self.linear = layers.SNLinear(1, name="linear")

    @core.once
    def _initialize(self, images: tf.Tensor) -> None:
        self.embed = layers.SNEmbed(self.num_classes, self.output_channels, dtype=images.dtype, name="embed")

    def __call__(self, images: tf.Tensor, y: tf.Tensor, is_training: bool | tf.Tensor) -> tf.Tensor:
        """Scores images: real ones high, generated ones low.

        Args:
          images: float [B, resolution, resolution, 3], in [-1, 1].
          y: int [B], their class ids.
          is_training: spectral norms advance their power iteration.

        Returns:
          Logits [B], of the images' dtype.
        """
        images, y = tf.convert_to_tensor(images), tf.convert_to_tensor(y)
        self._check_inputs(images, y)
        self._initialize(images)
        h = images
        for i, block in enumerate(self.blocks):
            h = block(h, is_training)
            if i == self._attention_index:
                h = self.attention(h, is_training)
        h = tf.reduce_sum(tf.nn.relu(h), axis=[1, 2])
        projection = tf.reduce_sum(self.embed(y, is_training) * h, axis=1)
        return self.linear(h, is_training)[:, 0] + projection

    def _check_inputs(self, images, y) -> None:
        who = core.utils.describe(self)
        core.utils.check_rank(self, images, 4, what="images", layout="[batch, height, width, 3]")
        core.utils.check_floating(self, images, what="images")
        expected = [self.resolution, self.resolution, 3]
        if images.shape[1:].as_list() != expected:
            raise ValueError(
                f"{who}: expected images of shape [batch, {', '.join(map(str, expected))}], got shape {images.shape}"
            )
        core.utils.check_rank(self, y, 1, what="y", layout="[batch] class ids")
        if not tf.as_dtype(y.dtype).is_integer:
            raise TypeError(f"{who}: y must be integer class ids, got dtype {tf.as_dtype(y.dtype).name}")
        if images.shape[0] is not None and y.shape[0] is not None and images.shape[0] != y.shape[0]:
            raise ValueError(f"{who}: images and y must have the same batch size, got {images.shape} and {y.shape}")
