"""ConvDRAW: a convolutional latent-variable image model drawn in L steps onto a canvas.

Gregor et al., "Towards Conceptual Compression", NeurIPS 2016 (ConvDRAW), as GQN's
generator uses it (Eslami et al., Science 2018, supplementary Figure S2). The state of
both cores is a [B, s, s, hidden] map at a quarter of the image side (s = S / 4: 16x16
for 64x64 images); the canvas u is at the image side. Step l = 0 .. L-1:

    prior       p_l = N(mu, exp(logvar)),  (mu, logvar) = conv5x5(h_g)        (learned prior)
    inference   h_e, c_e = ConvLSTM_e([read(x), c, h_g, read(u)], (h_e, c_e))
    posterior   q_l = N(mu, exp(logvar)),  (mu, logvar) = conv5x5(h_e)
    sample      z_l = mu_q + exp(logvar_q / 2) * eps_l                       (reparameterised)
    generation  h_g, c_g = ConvLSTM_g([c, z_l], (h_g, c_g))
    write       u = u + ConvTranspose4x4/4(h_g)

and at the end the image mean is conv1x1(u). `read` is a 4x4 stride-4 convolution (no
bias) that brings an image-sized map down to the state's size; `c` is the conditioning
(GQN: the query camera and the scene representation; none for the unconditional
ConvDRAW). Two ways to read the target, both as published:

- "canvas" (GQN): read(x) and read(u), the target and the canvas;
- "error" (ConvDRAW): read([x, x - conv1x1(u)]), the target and the error image of the
  current mean; the canvas itself is not read.

The loss is the negative evidence lower bound, in nats per example:

    -ELBO = sum_pixels -log N(x; conv1x1(u_L), sigma^2) + sum_l KL(q_l || p_l)

Generation runs the same steps with z_l drawn from the prior and no inference core.
The cores (the two ConvLSTMs and their reads and write) are one pair shared by all L
steps, or one pair per step (a setting: implementations differ, and one reports the KL
collapsing with shared cores); the prior, posterior and observation convolutions are
shared by the steps either way.

How it is computed. Each core's gates are the sum of one convolution per group of its
input channels (a convolution of a concatenation is the sum of the convolutions of its
parts), so the parts that do not change from step to step are computed once:

- the conditioning c = [v, r], and GQN's read target read(x), once per sequence (once
  per core, with a core per step);
- a part that is the same at every position (the query camera, a pooled
  representation: `vector` below) without the s x s convolution at all: its product
  with each of the kernel's taps, summed over the taps each position's window keeps
  (`broadcast_conv`), which is exact with "SAME" zero padding;
- at step 0 the states and the canvas are zero, and so are their convolutions, which
  are skipped.

With shared cores and a pooled representation that halves the work of a training step
(torch-gqn, which convolves the whole concatenation at every step, does twice as many
multiply-adds at its default settings). `GenerationCore.__call__` and
`InferenceCore.__call__` are the plain step, `core.Conv2DLSTM` on the concatenated
inputs; the tests check that the split computation equals it.
"""

import collections
import math

import tensorflow as tf

import core

# The cores' state is the image downsampled by this factor (the paper's 64 -> 16).
SCALE = 4

GenerationState = collections.namedtuple("GenerationState", ["lstm", "canvas"])

READS = ("canvas", "error")


def gaussian_kl(
    q_mean: tf.Tensor, q_log_variance: tf.Tensor, p_mean: tf.Tensor, p_log_variance: tf.Tensor
) -> tf.Tensor:
    """KL(q || p) of diagonal Gaussians, elementwise, in nats.

        KL = (log var_p - log var_q) / 2 + (var_q + (mu_q - mu_p)^2) / (2 var_p) - 1/2
           = (exp(d) - 1 - d) / 2 + (mu_q - mu_p)^2 / (2 var_p),   d = log var_q - log var_p

    exp(d) - 1 - d is summed from its series where |d| is small, so a posterior close
    to its prior (most latents, early in training) keeps its small KL accurately
    instead of losing it to cancellation.
    """
    d = q_log_variance - p_log_variance
    series = 1.0
    for k in range(8, 2, -1):  # d^2/2! + d^3/3! + ... + d^8/8!, in Horner form
        series = 1.0 + d / k * series
    variance_term = tf.where(tf.abs(d) < 0.5, 0.5 * tf.square(d) * series, tf.math.expm1(d) - d)
    return 0.5 * (variance_term + tf.square(q_mean - p_mean) * tf.exp(-p_log_variance))


def gaussian_nll(x: tf.Tensor, mean: tf.Tensor, sigma: tf.Tensor | float) -> tf.Tensor:
    """-log N(x; mean, sigma^2), elementwise, in nats: log(2 pi sigma^2) / 2 + (x - mean)^2 / (2 sigma^2).

    Its floor, at x = mean, is log(2 pi sigma^2) / 2: 0.5623 nats at sigma = 0.7, the
    paper's final pixel standard deviation (6,909 nats for a 64x64x3 image).
    """
    x = tf.convert_to_tensor(x)
    mean = tf.convert_to_tensor(mean, x.dtype)
    sigma = tf.cast(sigma, x.dtype)
    return 0.5 * math.log(2 * math.pi) + tf.math.log(sigma) + tf.square(x - mean) / (2.0 * tf.square(sigma))


def conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Stride-1 "SAME" convolution of NHWC `x` with `kernel` [kh, kw, in, out]."""
    return tf.nn.conv2d(x, kernel, strides=1, padding="SAME")


def _taps_kept(kernel: int, size: int) -> tf.Tensor:
    """[size, kernel] 0/1: whether tap a of a "SAME" window at position i falls inside the input."""
    before = (kernel - 1) // 2
    i, a = tf.meshgrid(tf.range(size), tf.range(kernel), indexing="ij")
    source = i + a - before
    return tf.cast((source >= 0) & (source < size), tf.float32)


def broadcast_conv(vector: tf.Tensor, kernel: tf.Tensor, size: int) -> tf.Tensor:
    """`conv(vector broadcast over size x size, kernel)`, computed without the convolution.

    A constant input contributes to position p the sum, over the taps t of p's window
    that fall inside the image ("SAME" pads with zeros), of kernel[t]^T vector. So: one
    product per tap, [B, kh, kw, out], then the taps each position keeps. B * kh * kw *
    in * out multiply-adds instead of B * size^2 * kh * kw * in * out.

    Args:
      vector: [B, in].
      kernel: [kh, kw, in, out].
      size: the side of the (square) output.

    Returns:
      [B, size, size, out].
    """
    per_tap = tf.einsum("bc,hwcd->bhwd", vector, kernel)
    rows = tf.cast(_taps_kept(kernel.shape[0], size), per_tap.dtype)
    cols = tf.cast(_taps_kept(kernel.shape[1], size), per_tap.dtype)
    return tf.einsum("ia,jc,bacd->bijd", rows, cols, per_tap)


def lstm_update(gates: tf.Tensor, cell: tf.Tensor | None) -> tuple[tf.Tensor, core.LSTMState]:
    """The LSTM cell from its gate pre-activations (channels i, f, g, o, as `core.Conv2DLSTM`'s).

        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g),   h_t = sigmoid(o) * tanh(c_t)

    `cell` None is a zero cell (the first step).
    """
    i, f, g, o = tf.split(gates, 4, axis=-1)
    new_cell = tf.sigmoid(i) * tf.tanh(g)
    if cell is not None:
        new_cell += tf.sigmoid(f) * cell
    hidden = tf.sigmoid(o) * tf.tanh(new_cell)
    return hidden, core.LSTMState(hidden, new_cell)


class _SplitLSTMCore(core.Module):
    """A `core.Conv2DLSTM` whose input channels come in named groups, convolved group by group.

    The LSTM's kernel `input_to_hidden/w` [k, k, sum of the groups, 4 * hidden] is the
    groups' kernels stacked in `groups` order; `_kernels()` slices it. The variables are
    the `core.Conv2DLSTM`'s own (made by one call on an empty batch), so a checkpoint of
    the plain core loads here and back.
    """

    def __init__(
        self, state_size: int, groups: dict[str, int], hidden_channels: int, kernel_shape: int, dtype, name: str | None
    ):
        super().__init__(name=name)
        self.state_size = core.utils.positive_int(self, state_size, "state_size")
        self.groups = {key: int(value) for key, value in groups.items() if value}
        self.input_channels = sum(self.groups.values())
        self.hidden_channels = core.utils.positive_int(self, hidden_channels, "hidden_channels")
        self.dtype = tf.as_dtype(dtype)
        shape = (state_size, state_size, self.input_channels)
        self.lstm = core.Conv2DLSTM(shape, hidden_channels, kernel_shape, dtype=dtype, name="lstm")

    @core.once
    def _build_lstm(self) -> None:
        s = self.state_size
        self.lstm(tf.zeros([0, s, s, self.input_channels], self.dtype), self.lstm.initial_state(0))

    def _kernels(self) -> dict[str, tf.Tensor]:
        """The input kernel's slice for each group, and "hidden": the hidden state's kernel."""
        self._build_lstm()
        w, start, kernels = self.lstm.input_to_hidden, 0, {}
        for key, channels in self.groups.items():
            kernels[key] = w[:, :, start : start + channels, :]
            start += channels
        kernels["hidden"] = self.lstm.hidden_to_hidden
        return kernels

    def _constant_gates(self, kernels, vector: tf.Tensor | None, spatial: tf.Tensor | None, batch) -> tf.Tensor:
        """The bias and the conditioning's share of the gates: [B, s, s, 4 * hidden]."""
        s = self.state_size
        gates = tf.zeros([batch, s, s, 4 * self.hidden_channels], self.dtype) + self.lstm.b
        if "vector" in self.groups:
            gates += broadcast_conv(vector, kernels["vector"], s)
        if "spatial" in self.groups:
            gates += conv(spatial, kernels["spatial"])
        return gates

    def _check_conditioning(self, vector, spatial) -> None:
        for key, value in (("vector", vector), ("spatial", spatial)):
            if (value is None) != (key not in self.groups):
                raise ValueError(
                    f"{core.utils.describe(self)}: built for {self.groups.get(key, 0)} {key} conditioning "
                    f"channels, got {None if value is None else value.shape}"
                )


class GenerationCore(_SplitLSTMCore):
    """One generator step: a ConvLSTM on [vector, spatial, z_l] (conditioning, latent), then the canvas write.

    The plain step is `state = core(inputs, state)` with inputs the concatenation
    [B, s, s, vector + spatial + z channels] (a vector broadcast over s x s); the
    generator uses `condition` once and `step` at each step, which compute the same.
    The state is `GenerationState(lstm=core.LSTMState, canvas=[B, 4s, 4s, canvas_channels])`.

    Args:
      state_size: s, the side of the state (a quarter of the image side).
      vector_channels: channels of the conditioning that is the same at every position.
      spatial_channels: channels of the conditioning map [B, s, s, .].
      z_channels: channels of z_l.
      hidden_channels: channels of the ConvLSTM's hidden state and cell.
      canvas_channels: channels of the canvas.
      kernel_shape: the ConvLSTM's kernel (5 in the paper).
      dtype: dtype of the parameters and the state.
      name: module name.
    """

    def __init__(
        self,
        state_size: int,
        vector_channels: int,
        spatial_channels: int,
        z_channels: int,
        hidden_channels: int,
        canvas_channels: int,
        kernel_shape: int = 5,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        groups = {"vector": vector_channels, "spatial": spatial_channels, "z": z_channels}
        super().__init__(state_size, groups, hidden_channels, kernel_shape, dtype, name)
        self.canvas_channels = core.utils.positive_int(self, canvas_channels, "canvas_channels")
        # Kernel = stride: each state position paints its own 4x4 patch of the canvas ("SAME"
        # then pads nothing, and the canvas is exactly 4 times the state's side).
        self.write = core.Conv2DTranspose(canvas_channels, SCALE, stride=SCALE, with_bias=False, name="write")

    def initial_state(self, batch_size: int | tf.Tensor) -> GenerationState:
        """Zero LSTM state and an empty (zero) canvas."""
        side = self.state_size * SCALE
        return GenerationState(
            lstm=self.lstm.initial_state(batch_size),
            canvas=tf.zeros([batch_size, side, side, self.canvas_channels], self.dtype),
        )

    def __call__(self, inputs: tf.Tensor, prev_state: GenerationState) -> GenerationState:
        """The plain step on the concatenated inputs."""
        hidden, lstm_state = self.lstm(inputs, prev_state.lstm)
        return GenerationState(lstm_state, prev_state.canvas + self.write(hidden))

    def condition(self, vector: tf.Tensor | None, spatial: tf.Tensor | None, batch_size) -> tf.Tensor:
        """The gates' part that is the same at every step (bias and conditioning), for `step`."""
        self._check_conditioning(vector, spatial)
        return self._constant_gates(self._kernels(), vector, spatial, batch_size)

    def step(self, z: tf.Tensor, gates: tf.Tensor, prev_state: GenerationState, first: bool = False) -> GenerationState:
        """One step from `condition`'s gates; `first`: the state is the initial (zero) one."""
        kernels = self._kernels()
        gates = gates + conv(z, kernels["z"])
        if not first:
            gates += conv(prev_state.lstm.hidden, kernels["hidden"])
        hidden, lstm_state = lstm_update(gates, None if first else prev_state.lstm.cell)
        canvas = self.write(hidden)
        return GenerationState(lstm_state, canvas if first else prev_state.canvas + canvas)


class InferenceCore(_SplitLSTMCore):
    """One inference step: a ConvLSTM on [read(image), vector, spatial, h_g, read(canvas)].

    `read` is a 4x4 stride-4 convolution (no bias). With `canvas_channels` > 0 the canvas
    is read (GQN); with 0 it is not (ConvDRAW, whose image input carries the error image
    instead). The plain step is `hidden, state = core(image, conditioning,
    generator_hidden, canvas, state)`, conditioning the concatenation [vector broadcast,
    spatial] (or None); the generator uses `condition` and `step`, which compute the same.

    Args:
      state_size: s, the side of the state.
      image_channels: channels of the image input (kept by its read).
      vector_channels: channels of the conditioning that is the same at every position.
      spatial_channels: channels of the conditioning map.
      generator_channels: channels of the generator's hidden state.
      hidden_channels: channels of this ConvLSTM's hidden state and cell.
      canvas_channels: channels of the canvas read (0: the canvas is not read).
      kernel_shape: the ConvLSTM's kernel (5 in the paper).
      dtype: dtype of the parameters and the state.
      name: module name.
    """

    def __init__(
        self,
        state_size: int,
        image_channels: int,
        vector_channels: int,
        spatial_channels: int,
        generator_channels: int,
        hidden_channels: int,
        canvas_channels: int = 0,
        kernel_shape: int = 5,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        groups = {
            "image": image_channels,
            "vector": vector_channels,
            "spatial": spatial_channels,
            "generator": generator_channels,
            "canvas": canvas_channels,
        }
        super().__init__(state_size, groups, hidden_channels, kernel_shape, dtype, name)
        self.read_image = core.Conv2D(
            image_channels, SCALE, stride=SCALE, padding="VALID", with_bias=False, name="read_image"
        )
        self.read_canvas = None
        if canvas_channels:
            self.read_canvas = core.Conv2D(
                canvas_channels, SCALE, stride=SCALE, padding="VALID", with_bias=False, name="read_canvas"
            )

    def initial_state(self, batch_size: int | tf.Tensor) -> core.LSTMState:
        return self.lstm.initial_state(batch_size)

    def __call__(
        self,
        image: tf.Tensor,
        conditioning: tf.Tensor | None,
        generator_hidden: tf.Tensor,
        canvas: tf.Tensor,
        prev_state: core.LSTMState,
    ) -> tuple[tf.Tensor, core.LSTMState]:
        """The plain step on the concatenated inputs."""
        parts = [self.read_image(image)]
        if conditioning is not None:
            parts.append(conditioning)
        parts.append(generator_hidden)
        if self.read_canvas is not None:
            parts.append(self.read_canvas(canvas))
        return self.lstm(tf.concat(parts, axis=-1), prev_state)

    def condition(
        self, image: tf.Tensor | None, vector: tf.Tensor | None, spatial: tf.Tensor | None, batch_size
    ) -> tf.Tensor:
        """The gates' part that is the same at every step: bias, conditioning and, if given, the image."""
        self._check_conditioning(vector, spatial)
        kernels = self._kernels()
        gates = self._constant_gates(kernels, vector, spatial, batch_size)
        if image is not None:
            gates += conv(self.read_image(image), kernels["image"])
        return gates

    def step(
        self,
        gates: tf.Tensor,
        generator_hidden: tf.Tensor,
        canvas: tf.Tensor,
        prev_state: core.LSTMState,
        image: tf.Tensor | None = None,
        first: bool = False,
    ) -> tuple[tf.Tensor, core.LSTMState]:
        """One step from `condition`'s gates, plus `image` if it changes from step to step.

        `first`: the states and the canvas are the initial (zero) ones.
        """
        kernels = self._kernels()
        if image is not None:
            gates = gates + conv(self.read_image(image), kernels["image"])
        if not first:
            gates = gates + conv(generator_hidden, kernels["generator"]) + conv(prev_state.hidden, kernels["hidden"])
            if self.read_canvas is not None:
                gates += conv(self.read_canvas(canvas), kernels["canvas"])
        return lstm_update(gates, None if first else prev_state.cell)

    def _kernels(self) -> dict[str, tf.Tensor]:
        self._build_reads()
        return super()._kernels()

    @core.once
    def _build_reads(self) -> None:
        # The reads' variables exist whichever steps run (at step 0 the canvas is not read).
        side = self.state_size * SCALE
        self.read_image(tf.zeros([0, side, side, self.groups["image"]], self.dtype))
        if self.read_canvas is not None:
            self.read_canvas(tf.zeros([0, side, side, self.groups["canvas"]], self.dtype))


class Generator(core.Module):
    """ConvDRAW's L steps: the cores, the learned prior, the posterior and the observation.

    The engine of both `gqn.GQN` (conditioned, "canvas" read) and `gqn.ConvDRAW`
    (unconditional, "error" read); see the module docstring for the equations. The
    conditioning comes in two parts, either may be absent: `vector` [B, Cv], the same at
    every position of the state (a camera, a pooled representation), and `spatial`
    [B, s, s, Cs] (a representation map); the cores see [vector broadcast, spatial].

    Args:
      image_size: S, the side of the (square) images; a multiple of 4.
      num_steps: L, the number of drawing steps (12 in the paper).
      share_cores: one pair of cores for all steps (True) or one pair per step.
      vector_channels: Cv (0: no vector conditioning).
      spatial_channels: Cs (0: no spatial conditioning).
      read: "canvas" (GQN) or "error" (ConvDRAW).
      image_channels: channels of the images (3: RGB).
      hidden_channels: channels of both ConvLSTMs' state and of the canvas (128 in the paper).
      z_channels: channels of each step's latent map z_l (3 as in torch-gqn).
      kernel_shape: kernel of the ConvLSTMs and of the prior and posterior (5).
      dtype: dtype of the parameters, the state and the inputs.
      name: module name.
    """

    def __init__(
        self,
        image_size: int,
        num_steps: int = 12,
        share_cores: bool = False,
        vector_channels: int = 0,
        spatial_channels: int = 0,
        read: str = "canvas",
        image_channels: int = 3,
        hidden_channels: int = 128,
        z_channels: int = 3,
        kernel_shape: int = 5,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        super().__init__(name=name)
        describe = core.utils.describe(self)
        image_size = core.utils.positive_int(self, image_size, "image_size")
        if image_size % SCALE:
            raise ValueError(f"{describe}: image_size must be a multiple of {SCALE}, got {image_size}")
        if read not in READS:
            raise ValueError(f"{describe}: read must be one of {READS}, got {read!r}")
        if not isinstance(share_cores, bool):
            raise TypeError(f"{describe}: share_cores must be a bool, got {share_cores!r}")
        for what, value in (("vector_channels", vector_channels), ("spatial_channels", spatial_channels)):
            if not core.utils.is_int(value) or value < 0:
                raise ValueError(f"{describe}: {what} must be an int >= 0, got {value!r}")
        self.image_size = image_size
        self.state_size = image_size // SCALE
        self.num_steps = core.utils.positive_int(self, num_steps, "num_steps")
        self.share_cores = share_cores
        self.vector_channels = int(vector_channels)
        self.spatial_channels = int(spatial_channels)
        self.read = read
        self.image_channels = core.utils.positive_int(self, image_channels, "image_channels")
        self.hidden_channels = core.utils.positive_int(self, hidden_channels, "hidden_channels")
        self.z_channels = core.utils.positive_int(self, z_channels, "z_channels")
        self.dtype = tf.as_dtype(dtype)
        read_channels = image_channels if read == "canvas" else 2 * image_channels
        cores = 1 if share_cores else num_steps
        self.generation_cores = [
            GenerationCore(
                self.state_size,
                self.vector_channels,
                self.spatial_channels,
                z_channels,
                hidden_channels,
                hidden_channels,
                kernel_shape,
                dtype=dtype,
                name=f"generation_core_{i}",
            )
            for i in range(cores)
        ]
        self.inference_cores = [
            InferenceCore(
                self.state_size,
                read_channels,
                self.vector_channels,
                self.spatial_channels,
                hidden_channels,
                hidden_channels,
                canvas_channels=hidden_channels if read == "canvas" else 0,
                kernel_shape=kernel_shape,
                dtype=dtype,
                name=f"inference_core_{i}",
            )
            for i in range(cores)
        ]
        self.prior = core.Conv2D(2 * z_channels, kernel_shape, name="prior")
        self.posterior = core.Conv2D(2 * z_channels, kernel_shape, name="posterior")
        self.observation = core.Conv2D(image_channels, 1, name="observation")

    @property
    def noise_shape(self) -> list[int]:
        """The shape of one example's noise: [L, s, s, z_channels]."""
        return [self.num_steps, self.state_size, self.state_size, self.z_channels]

    def noise(self, seeds: tf.Tensor) -> tf.Tensor:
        """Standard normals for `elbo` and `generate`: [B, L, s, s, z_channels], example b's from seeds[b].

        Stateless (seeds: int [B, 2]): an example's noise depends on its own seed only,
        not on the batch it is in, so data-parallel replicas draw what one device would.
        Draw it outside XLA, whose random number generators differ from TensorFlow's
        kernels (the training step does).
        """
        return tf.map_fn(
            lambda seed: tf.random.stateless_normal(self.noise_shape, seed, dtype=self.dtype),
            seeds,
            fn_output_signature=tf.TensorSpec(self.noise_shape, self.dtype),
        )

    def elbo(
        self,
        target: tf.Tensor,
        sigma: tf.Tensor | float,
        noise: tf.Tensor | None = None,
        vector: tf.Tensor | None = None,
        spatial: tf.Tensor | None = None,
    ) -> dict[str, tf.Tensor]:
        """The negative ELBO of `target` [B, S, S, C] and its parts, per example.

        Args:
          target: the images, float in [0, 1].
          sigma: the pixel standard deviation of the likelihood (annealed in training).
          noise: standard normals [B, L, S/4, S/4, z_channels] for the posterior samples;
            None draws them (`tf.random.normal`). Passing them makes the ELBO a pure
            function of its inputs (exact resumption, replicas equal to one device).
          vector: the conditioning that is the same at every position, [B, Cv].
          spatial: the conditioning map, [B, S/4, S/4, Cs].

        Returns:
          {"loss": nll + kl [B], "nll" [B], "kl" [B], "kl_per_step" [B, L], "mse"
          (mean squared error of the mean image) [B], "mean": the mean image [B, S, S, C]}.
        """
        self._check(target, vector, spatial)
        noise = self._noise(noise, tf.shape(target)[0])
        mean, kls = self._draw(target, vector, spatial, noise, posterior_mean=False)
        nll = tf.reduce_sum(gaussian_nll(target, mean, sigma), axis=[1, 2, 3])
        kl_per_step = tf.stack(kls, axis=1)
        kl = tf.reduce_sum(kl_per_step, axis=1)
        return {
            "loss": nll + kl,
            "nll": nll,
            "kl": kl,
            "kl_per_step": kl_per_step,
            "mse": tf.reduce_mean(tf.square(mean - target), axis=[1, 2, 3]),
            "mean": mean,
        }

    def generate(
        self,
        batch_size: int | tf.Tensor,
        noise: tf.Tensor | None = None,
        vector: tf.Tensor | None = None,
        spatial: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Image means [B, S, S, C] with every z_l drawn from the learned prior (noise as in `elbo`)."""
        self._check(None, vector, spatial)
        mean, _ = self._draw(None, vector, spatial, self._noise(noise, batch_size), posterior_mean=False)
        return mean

    def reconstruct(
        self, target: tf.Tensor, vector: tf.Tensor | None = None, spatial: tf.Tensor | None = None
    ) -> tf.Tensor:
        """Image means [B, S, S, C] with every z_l at its posterior mean given `target`."""
        self._check(target, vector, spatial)
        mean, _ = self._draw(target, vector, spatial, None, posterior_mean=True)
        return mean

    def _noise(self, noise: tf.Tensor | None, batch_size: int | tf.Tensor) -> tf.Tensor:
        if noise is None:
            return tf.random.normal([batch_size, *self.noise_shape], dtype=self.dtype)
        core.utils.check_rank(self, noise, 5, what="noise", layout="[batch, steps, s, s, z_channels]")
        if noise.shape[1:].is_fully_defined() and noise.shape[1:] != self.noise_shape:
            raise ValueError(
                f"{core.utils.describe(self)}: noise must be [batch, {', '.join(map(str, self.noise_shape))}], "
                f"got shape {noise.shape}"
            )
        return tf.cast(noise, self.dtype)

    def _check(self, target: tf.Tensor | None, vector: tf.Tensor | None, spatial: tf.Tensor | None) -> None:
        describe = core.utils.describe(self)
        if target is not None:
            core.utils.check_rank(self, target, 4, what="images", layout="[batch, S, S, channels]")
            core.utils.check_dtype(self, target, self.dtype, what="images")
            expected = [self.image_size, self.image_size, self.image_channels]
            if target.shape[1:] != expected:
                raise ValueError(
                    f"{describe}: images must be [batch, {', '.join(map(str, expected))}], got {target.shape}"
                )
        s = self.state_size
        for what, value, channels, shape in (
            ("vector", vector, self.vector_channels, [self.vector_channels]),
            ("spatial", spatial, self.spatial_channels, [s, s, self.spatial_channels]),
        ):
            if (value is None) != (channels == 0):
                raise ValueError(
                    f"{describe}: built for {channels} {what} conditioning channels, "
                    f"got {what} {None if value is None else value.shape}"
                )
            if value is not None:
                core.utils.check_dtype(self, value, self.dtype, what=f"{what} conditioning")
                if value.shape.rank != len(shape) + 1 or value.shape[1:] != shape:
                    raise ValueError(
                        f"{describe}: the {what} conditioning must be [batch, {', '.join(map(str, shape))}], "
                        f"got {value.shape}"
                    )

    def _draw(
        self,
        target: tf.Tensor | None,
        vector: tf.Tensor | None,
        spatial: tf.Tensor | None,
        noise: tf.Tensor | None,
        posterior_mean: bool,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """The L steps: the final image mean, and each step's KL [B] (none when generating)."""
        batch = tf.shape(target if target is not None else noise)[0]
        generation = self.generation_cores[0].initial_state(batch)
        inference = self.inference_cores[0].initial_state(batch)
        constant_image = target if target is not None and self.read == "canvas" else None
        generation_gates, inference_gates = {}, {}  # per core: the gates' constant part, made once
        kls = []
        for step in range(self.num_steps):
            index = 0 if self.share_cores else step
            # At step 0 the states and the canvas are zero: their convolutions are skipped,
            # unless the core never runs again (unshared cores, L = 1), whose kernels then
            # get their zero gradients from the convolutions, as in the plain computation.
            first = step == 0 and self.share_cores and self.num_steps > 1
            generation_core = self.generation_cores[index]
            if index not in generation_gates:
                generation_gates[index] = generation_core.condition(vector, spatial, batch)
            generator_hidden = generation.lstm.hidden
            prior_mean, prior_log_variance = tf.split(self.prior(generator_hidden), 2, axis=-1)
            if target is None:
                z = prior_mean + tf.exp(0.5 * prior_log_variance) * noise[:, step]
            else:
                inference_core = self.inference_cores[index]
                if index not in inference_gates:
                    inference_gates[index] = inference_core.condition(constant_image, vector, spatial, batch)
                image = None
                if self.read == "error":
                    image = tf.concat([target, target - self.observation(generation.canvas)], axis=-1)
                hidden, inference = inference_core.step(
                    inference_gates[index], generator_hidden, generation.canvas, inference, image, first
                )
                q_mean, q_log_variance = tf.split(self.posterior(hidden), 2, axis=-1)
                z = q_mean if posterior_mean else q_mean + tf.exp(0.5 * q_log_variance) * noise[:, step]
                kl = gaussian_kl(q_mean, q_log_variance, prior_mean, prior_log_variance)
                kls.append(tf.reduce_sum(kl, axis=[1, 2, 3]))
            generation = generation_core.step(z, generation_gates[index], generation, first)
        return self.observation(generation.canvas), kls
