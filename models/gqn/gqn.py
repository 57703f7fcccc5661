"""The Generative Query Network (GQN) and the unconditional ConvDRAW image model.

Eslami et al., "Neural scene representation and rendering", Science 360 (2018): a
representation network turns each context view of a scene (an image and its camera)
into a representation, summed over the views into r; a ConvDRAW generator
(`convdraw.Generator`) conditioned on r and a query camera v_q draws the view from v_q.
Trained by maximising the evidence lower bound of the query view.

`GQN` is one module with several forward methods over the same variables:

    r = gqn.represent(context_frames, context_cameras)
    terms = gqn.elbo(context_frames, context_cameras, query_camera, query_frame, sigma)
    image = gqn.generate(r, query_camera)          # a sample from the prior
    image = gqn.reconstruct(context_frames, context_cameras, query_camera, query_frame)

Frames are float NHWC in [0, 1]; cameras are [.., 7]: position (x, y, z) and the sines
and cosines of yaw and pitch, in the order the data reader was told (`data.read_scenes`).
"""

import tensorflow as tf

import core
from models.gqn import convdraw
from models.gqn.representation import CAMERA_SIZE, Pool, Tower

REPRESENTATIONS = {"tower": Tower, "pool": Pool}


class GQN(core.Module):
    """GQN: a representation network and a conditional ConvDRAW generator.

    Args:
      representation: "tower" (a [S/4, S/4, C] map; the paper's default) or "pool"
        (its spatial mean, a vector broadcast over the generator's state).
      num_steps: L, the generator's drawing steps (12 in the paper).
      share_cores: one pair of generator cores for all L steps, or one pair per step.
      image_size: S, the side of the square frames (64 in the paper); a multiple of 4.
      representation_channels: C, the representation's channels (256).
      hidden_channels: channels of the generator's ConvLSTMs and canvas (128).
      z_channels: channels of each step's latent map (3).
      kernel_shape: the ConvLSTMs' kernel (5).
      dtype: dtype of the parameters and the inputs.
      name: module name.
    """

    def __init__(
        self,
        representation: str = "tower",
        num_steps: int = 12,
        share_cores: bool = False,
        image_size: int = 64,
        representation_channels: int = 256,
        hidden_channels: int = 128,
        z_channels: int = 3,
        kernel_shape: int = 5,
        dtype: tf.DType = tf.float32,
        name: str = "gqn",
    ):
        super().__init__(name=name)
        if representation not in REPRESENTATIONS:
            raise ValueError(
                f"{core.utils.describe(self)}: representation must be one of {sorted(REPRESENTATIONS)}, "
                f"got {representation!r}"
            )
        self.representation_kind = representation
        self.dtype = tf.as_dtype(dtype)
        self.representation = REPRESENTATIONS[representation](representation_channels, name=representation)
        pooled = representation == "pool"
        self.generator = convdraw.Generator(
            image_size,
            num_steps,
            share_cores,
            # The camera, and a pooled representation, are the same over the whole state.
            vector_channels=CAMERA_SIZE + (representation_channels if pooled else 0),
            spatial_channels=0 if pooled else representation_channels,
            read="canvas",
            hidden_channels=hidden_channels,
            z_channels=z_channels,
            kernel_shape=kernel_shape,
            dtype=dtype,
            name="generator",
        )
        self.image_size = self.generator.image_size
        self.num_steps = self.generator.num_steps

    def noise(self, seeds: tf.Tensor) -> tf.Tensor:
        """Per-example noise for `elbo` and `generate` from seeds [B, 2] (`convdraw.Generator.noise`)."""
        return self.generator.noise(seeds)

    def represent(self, context_frames: tf.Tensor, context_cameras: tf.Tensor) -> tf.Tensor:
        """The scene representation r: the sum over the K context views of each view's representation.

        Args:
          context_frames: [B, K, S, S, 3].
          context_cameras: [B, K, 7].

        Returns:
          r: [B, S/4, S/4, C] ("tower") or [B, 1, 1, C] ("pool").

        Raises:
          ValueError: for frames or cameras of the wrong shape (naming what was given).
        """
        self._check_context(context_frames, context_cameras)
        shape = tf.shape(context_frames)
        size = self.image_size
        views = self.representation(
            tf.reshape(context_frames, [-1, size, size, 3]), tf.reshape(context_cameras, [-1, CAMERA_SIZE])
        )
        views = tf.reshape(views, tf.concat([shape[:2], tf.shape(views)[1:]], axis=0))
        return tf.reduce_sum(views, axis=1)

    def elbo(
        self,
        context_frames: tf.Tensor,
        context_cameras: tf.Tensor,
        query_camera: tf.Tensor,
        query_frame: tf.Tensor,
        sigma: tf.Tensor | float,
        noise: tf.Tensor | None = None,
    ) -> dict[str, tf.Tensor]:
        """The negative ELBO of the query view given the context, and its parts, per example.

        Args:
          context_frames: [B, K, S, S, 3] in [0, 1].
          context_cameras: [B, K, 7].
          query_camera: [B, 7].
          query_frame: [B, S, S, 3] in [0, 1].
          sigma: the likelihood's pixel standard deviation (annealed 2.0 -> 0.7 in the paper).
          noise: standard normals [B, L, S/4, S/4, z_channels] for the posterior samples;
            None draws them. Given, the ELBO is a pure function of its inputs.

        Returns:
          {"loss": the negative ELBO in nats [B], "nll" [B], "kl" (summed over the
          steps) [B], "kl_per_step" [B, L], "mse" (of the mean image, per pixel and
          channel) [B], "mean": the mean image [B, S, S, 3]}.
        """
        r = self.represent(context_frames, context_cameras)
        return self.generator.elbo(query_frame, sigma, noise, *self._conditioning(r, query_camera))

    def generate(self, representation: tf.Tensor, query_camera: tf.Tensor, noise: tf.Tensor | None = None) -> tf.Tensor:
        """The view from `query_camera` [B, 7] of the scene `representation`, sampled from the prior.

        Returns the mean image of the sample, clipped to [0, 1]: [B, S, S, 3].
        """
        vector, spatial = self._conditioning(representation, query_camera)
        mean = self.generator.generate(tf.shape(vector)[0], noise, vector, spatial)
        return tf.clip_by_value(mean, 0.0, 1.0)

    def reconstruct(
        self, context_frames: tf.Tensor, context_cameras: tf.Tensor, query_camera: tf.Tensor, query_frame: tf.Tensor
    ) -> tf.Tensor:
        """The query view drawn with each latent at its posterior mean, clipped to [0, 1]: [B, S, S, 3]."""
        r = self.represent(context_frames, context_cameras)
        mean = self.generator.reconstruct(query_frame, *self._conditioning(r, query_camera))
        return tf.clip_by_value(mean, 0.0, 1.0)

    def _conditioning(self, r: tf.Tensor, query_camera: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
        """The generator's conditioning [v_q, r]: (vector, spatial) = (v_q, r) for a tower's
        map, ([v_q, r], None) for a pooled r, which is the same at every position too."""
        describe = core.utils.describe(self)
        core.utils.check_rank(self, query_camera, 2, what="query cameras", layout="[batch, 7]")
        core.utils.check_size(self, query_camera, 1, CAMERA_SIZE, "query cameras", "camera size")
        core.utils.check_rank(self, r, 4, what="representations", layout="[batch, height, width, channels]")
        side = self.generator.state_size
        expected = [1 if self.representation_kind == "pool" else side] * 2 + [self.representation.channels]
        if r.shape[1:] != expected:
            raise ValueError(
                f"{describe}: a {self.representation_kind} representation is [batch, "
                f"{', '.join(map(str, expected))}], got shape {r.shape}"
            )
        if r.shape[0] is not None and query_camera.shape[0] is not None and r.shape[0] != query_camera.shape[0]:
            raise ValueError(f"{describe}: {r.shape[0]} representations but {query_camera.shape[0]} query cameras")
        camera = tf.cast(query_camera, r.dtype)
        if self.representation_kind == "pool":
            return tf.concat([camera, r[:, 0, 0, :]], axis=-1), None
        return camera, r

    def _check_context(self, frames: tf.Tensor, cameras: tf.Tensor) -> None:
        core.utils.check_rank(self, frames, 5, what="context frames", layout="[batch, views, S, S, 3]")
        core.utils.check_rank(self, cameras, 3, what="context cameras", layout="[batch, views, 7]")
        size = self.image_size
        if frames.shape[2:] != [size, size, 3]:
            raise ValueError(
                f"{core.utils.describe(self)}: context frames must be [batch, views, {size}, {size}, 3], "
                f"got shape {frames.shape}"
            )
        core.utils.check_size(self, cameras, 2, CAMERA_SIZE, "context cameras", "camera size")
        if not frames.shape[:2].is_compatible_with(cameras.shape[:2]):
            raise ValueError(
                f"{core.utils.describe(self)}: context frames {frames.shape} and cameras {cameras.shape} "
                "differ in batch or views"
            )


class ConvDRAW(core.Module):
    """ConvDRAW, the unconditional image model (Gregor et al., 2016): error-image read, learned prior.

    The same cores as GQN's generator (`convdraw.Generator` with read="error" and no
    conditioning), with the same forward methods.

    Args:
      image_size: S, the side of the square images; a multiple of 4.
      num_steps: L, the drawing steps.
      share_cores: one pair of cores for all steps, or one pair per step.
      image_channels: channels of the images.
      hidden_channels: channels of the ConvLSTMs and the canvas.
      z_channels: channels of each step's latent map.
      kernel_shape: the ConvLSTMs' kernel.
      dtype: dtype of the parameters and the inputs.
      name: module name.
    """

    def __init__(
        self,
        image_size: int = 32,
        num_steps: int = 12,
        share_cores: bool = False,
        image_channels: int = 3,
        hidden_channels: int = 128,
        z_channels: int = 3,
        kernel_shape: int = 5,
        dtype: tf.DType = tf.float32,
        name: str = "conv_draw",
    ):
        super().__init__(name=name)
        self.generator = convdraw.Generator(
            image_size,
            num_steps,
            share_cores,
            read="error",
            image_channels=image_channels,
            hidden_channels=hidden_channels,
            z_channels=z_channels,
            kernel_shape=kernel_shape,
            dtype=dtype,
            name="generator",
        )

    def noise(self, seeds: tf.Tensor) -> tf.Tensor:
        """Per-example noise for `elbo` and `generate` from seeds [B, 2] (`convdraw.Generator.noise`)."""
        return self.generator.noise(seeds)

    def elbo(self, frames: tf.Tensor, sigma: tf.Tensor | float, noise: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """The negative ELBO of `frames` [B, S, S, C] and its parts; as `GQN.elbo`."""
        return self.generator.elbo(frames, sigma, noise)

    def generate(self, batch_size: int | tf.Tensor, noise: tf.Tensor | None = None) -> tf.Tensor:
        """`batch_size` images sampled from the prior, clipped to [0, 1]: [B, S, S, C]."""
        return tf.clip_by_value(self.generator.generate(batch_size, noise), 0.0, 1.0)

    def reconstruct(self, frames: tf.Tensor) -> tf.Tensor:
        """`frames` drawn with each latent at its posterior mean, clipped to [0, 1]."""
        return tf.clip_by_value(self.generator.reconstruct(frames), 0.0, 1.0)
