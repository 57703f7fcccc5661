"""Sampling from a trained generator: truncated latents, standing statistics, averaged weights.

- `truncated_normal`: the truncation trick (Brock et al., 2019, section 3.1): a latent
  drawn from N(0, I) with every value beyond the threshold drawn again, until none is.
  Resampling, not rescaling: the values keep the normal's shape inside the threshold.
- `standing_statistics`: the generator's batch-norm statistics recomputed as the plain
  average over many training-mode forward passes (the paper's "standing statistics",
  appendix C), instead of moving averages that trail the weights.
- `WeightAverage`: the exponential moving average of the generator's weights (Karras
  et al., 2018; Yazici et al., 2019) that BigGAN samples and evaluates with, starting
  at a given step.
- `image_grid` / `write_png`: samples tiled into one picture.
"""

import numbers

import numpy as np
import tensorflow as tf

import core


def truncated_normal(
    shape: list[int], seed: tf.Tensor | list[int], threshold: float | None = None, dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """Standard normals with every value beyond +-`threshold` redrawn until none is.

    Args:
      shape: the output's shape.
      seed: a [2] integer seed (stateless: the same seed, the same values).
      threshold: the truncation; None (or inf) for plain standard normals.
      dtype: the output's dtype.

    Raises:
      ValueError: for a threshold that is not positive.
    """
    if threshold is None or threshold == float("inf"):
        return tf.random.stateless_normal(shape, seed, dtype=dtype)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold > 0:
        raise ValueError(f"truncated_normal: threshold must be a positive number or None, got {threshold!r}")
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    values = tf.random.stateless_normal(shape, seed, dtype=tf.float32)

    def redraw(i, values):
        fresh = tf.random.stateless_normal(shape, tf.stack([seed[0], seed[1] + 1_000_003 * i]), dtype=tf.float32)
        return i + 1, tf.where(tf.abs(values) > threshold, fresh, values)

    _, values = tf.while_loop(
        lambda i, values: tf.reduce_any(tf.abs(values) > threshold), redraw, (tf.constant(1, tf.int64), values)
    )
    return tf.cast(values, dtype)


def batch_norms(module: tf.Module) -> list[core.BatchNorm]:
    """Every `core.BatchNorm` (and `CrossReplicaBatchNorm`) in `module`."""
    return [m for m in module.submodules if isinstance(m, core.BatchNorm)]


def standing_statistics(
    generator,
    num_batches: int = 100,
    batch_size: int = 64,
    seed: int = 0,
    threshold: float | None = None,
) -> None:
    """Sets the generator's batch-norm statistics to averages over `num_batches` forward passes.

    Each pass draws latents (truncated at `threshold`, as the samples to be made will
    be: the paper recomputes them per truncation) and uniformly random classes, runs
    the generator in training mode, and reads each batch norm's batch mean and
    variance (the variance as the batch norm's moving variance tracks it). The moving
    averages are then set to the plain means of those values, so that inference
    (`is_training=False`) normalises with them. The passes also advance the spectral
    norms' power iteration, which refines them for the weights at hand.

    Call it on the generator that will sample (the weight average, usually) and outside
    any replica context: the generator must normalise per replica (`cross_replica`
    False), and is best run on one device.

    Args:
      generator: a built `biggan.Generator`.
      num_batches: forward passes to average over (the paper: about 100).
      batch_size: examples per pass.
      seed: seeds the latents and classes.
      threshold: truncation of the latents; None for none.
    """
    norms = batch_norms(generator)
    if not norms:
        return
    averages = [(bn.moving_mean, bn.moving_variance) for bn in norms]

    @tf.function(autograph=False)
    def one_pass(z, y):
        for pair in averages:
            for average in pair:
                average.reset()
        generator(z, y, is_training=True)
        return [[average.value for average in pair] for pair in averages]

    sums = None
    for i in range(num_batches):
        z = truncated_normal([batch_size, generator.dim_z], [seed, 2 * i], threshold)
        y = tf.random.stateless_uniform([batch_size], [seed, 2 * i + 1], 0, generator.num_classes, tf.int32)
        values = [[np.asarray(v, np.float64) for v in pair] for pair in one_pass(z, y)]
        sums = values if sums is None else [[s + v for s, v in zip(sp, vp)] for sp, vp in zip(sums, values)]
    for pair, total in zip(averages, sums):
        for average, value in zip(pair, total):
            average.average.assign(tf.cast(value / num_batches, average.average.dtype))


class WeightAverage:
    """Keeps a copy of a network whose weights are an exponential moving average of another's.

    At each `update(step)`, for every trainable variable s of `source` and its
    counterpart t of `target` (the same network, built alike):

        t <- decay_s * t + (1 - decay_s) * s,   decay_s = decay if step >= start_step else 0,

    so that before `start_step` the copy follows the source exactly (BigGAN-PyTorch's
    rule); non-trainable state (batch-norm statistics, spectral-norm vectors) is copied
    as it is (an averaged power-iteration vector would not be a unit vector). There is
    no bias correction: the average starts from the source's weights at `start_step`.

    Args:
      source: the network being trained.
      target: its copy, of the same architecture, already built.
      decay: the average's decay (the paper: 0.9999).
      start_step: the first step that averages (BigGAN-PyTorch: 20,000 at 128x128).

    It holds no variables of its own (the target's are the average), so a checkpoint of
    the target is all a resumed run needs.
    """

    def __init__(self, source: tf.Module, target: tf.Module, decay: float = 0.9999, start_step: int = 0):
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 <= decay < 1.0:
            raise ValueError(f"WeightAverage: decay must be in [0, 1), got {decay!r}")
        if not core.utils.is_int(start_step) or start_step < 0:
            raise ValueError(f"WeightAverage: start_step must be a non-negative int, got {start_step!r}")
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.networks = (source, target)
        pairs = list(zip(source.variables, target.variables))
        mismatched = [
            (s.name, t.name) for s, t in pairs if s.shape != t.shape or s.dtype != t.dtype or s.trainable != t.trainable
        ]
        if len(source.variables) != len(target.variables) or mismatched:
            raise ValueError(
                f"WeightAverage: target must be built like source "
                f"({len(source.variables)} vs {len(target.variables)} variables; first mismatches {mismatched[:3]})"
            )
        self._pairs = pairs

    def update(self, step: int | tf.Tensor, enabled: bool | tf.Tensor = True) -> None:
        """Moves the target's weights towards the source's (see the class docstring).

        `enabled` False (a bool tensor, say) leaves every variable as it is; the writes
        happen either way, outside any control flow, since a write to a replicated
        variable that synchronises the replicas may not sit inside a `tf.cond`.
        """
        step = tf.convert_to_tensor(step)
        enabled = tf.convert_to_tensor(enabled, tf.bool)
        for source, target in self._pairs:
            if not target.trainable:
                target.assign(tf.where(enabled, source, target))
                continue
            decay = tf.where(step >= self.start_step, tf.constant(self.decay, target.dtype), 0.0)
            target.assign(tf.where(enabled, decay * target + (1.0 - decay) * source, target))

    def copy(self) -> None:
        """Sets the target equal to the source."""
        for source, target in self._pairs:
            target.assign(source)


def image_grid(images: np.ndarray | tf.Tensor, columns: int | None = None) -> np.ndarray:
    """Tiles images [N, H, W, 3] in [-1, 1] into one uint8 picture, `columns` wide (default: square)."""
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = -(-n // columns)
    pixels = np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    grid = np.zeros([rows * (h + 1) + 1, columns * (w + 1) + 1, c], np.uint8)
    for i in range(n):
        r, q = divmod(i, columns)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = pixels[i]
    return grid


def write_png(path: str, picture: np.ndarray) -> None:
    """Writes a uint8 [H, W, 3] picture to `path` as a PNG (whole or not at all)."""
    tmp = path + ".tmp"
    tf.io.write_file(tmp, tf.io.encode_png(picture))
    tf.io.gfile.rename(tmp, path, overwrite=True)
