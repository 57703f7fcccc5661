"""The repeat-copy task: read a bit pattern once, write it back a given number of times.

Graves et al. (2016) and DeepMind's released training setup. One sequence, time-major,
with L pattern steps and R repeats (L and R drawn uniformly per sequence):

    t = 0                start flag (observation channel num_bits)
    t = 1 .. L           the pattern, num_bits random bits per step
    t = L + 1            the repeat count R / norm_max (observation channel num_bits + 1)
    t = L + 2 ..         the target: the pattern R times over, then an end marker
                         (target channel num_bits) at t = L + 2 + L R

so a sequence lasts L (R + 1) + 3 steps. Every batch is padded to the longest sequence
the task can draw, max_length (max_repeats + 1) + 3 steps, so shapes are static (XLA,
one trace); the mask is 1 exactly on the L R + 1 target steps.

A batch is a pure function of a seed (stateless random ops), so a training run that
draws batch i from seed (s, i) resumes exactly where it stopped.
"""

import collections
import dataclasses

import tensorflow as tf

Batch = collections.namedtuple("Batch", ["observations", "targets", "mask"])


@dataclasses.dataclass(frozen=True)
class RepeatCopy:
    """Sizes of the task; DeepMind's defaults (the reference's table).

    Attributes:
      num_bits: bits per pattern step.
      batch_size: sequences per batch.
      min_length, max_length: range of the pattern length L (inclusive).
      min_repeats, max_repeats: range of the repeat count R (inclusive).
      norm_max: the repeat count is shown to the model as R / norm_max.
    """

    num_bits: int = 4
    batch_size: int = 16
    min_length: int = 1
    max_length: int = 2
    min_repeats: int = 1
    max_repeats: int = 2
    norm_max: int = 10

    def __post_init__(self):
        for name in ("num_bits", "batch_size", "min_length", "min_repeats", "norm_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RepeatCopy: {name} must be a positive int, got {value!r}")
        if self.max_length < self.min_length:
            raise ValueError(f"RepeatCopy: max_length {self.max_length} < min_length {self.min_length}")
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"RepeatCopy: max_repeats {self.max_repeats} < min_repeats {self.min_repeats}")

    @property
    def time_steps(self) -> int:
        """Steps of every batch: the longest sequence the task can draw."""
        return self.max_length * (self.max_repeats + 1) + 3

    @property
    def observation_size(self) -> int:
        return self.num_bits + 2

    @property
    def target_size(self) -> int:
        return self.num_bits + 1

    def batch(self, seed: tf.Tensor, batch_size: int | None = None) -> Batch:
        """Draws a batch from `seed`, a [2] integer tensor (the same seed, the same batch).

        Returns:
          Batch(observations [T, B, num_bits + 2], targets [T, B, num_bits + 1],
          mask [T, B]), float32, with T = `time_steps`.
        """
        b = batch_size or self.batch_size
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
        lengths = tf.random.stateless_uniform([b], seeds[0], self.min_length, self.max_length + 1, tf.int32)
        repeats = tf.random.stateless_uniform([b], seeds[1], self.min_repeats, self.max_repeats + 1, tf.int32)
        bits = tf.cast(tf.random.stateless_uniform([b, self.max_length, self.num_bits], seeds[2]) < 0.5, tf.float32)

        t = tf.range(self.time_steps)[:, None]  # [T, 1], against [B] per-sequence values
        pattern_steps = (t >= 1) & (t <= lengths)
        count_step = t == lengths + 1
        first_target = lengths + 2
        end_step = t == first_target + lengths * repeats
        target_steps = (t >= first_target) & (t < first_target + lengths * repeats)

        # The pattern step shown at t: t - 1 while reading, (t - first_target) mod L while writing.
        read_index = tf.clip_by_value(t - 1, 0, self.max_length - 1)
        write_index = tf.math.floormod(tf.maximum(t - first_target, 0), lengths)
        batch_index = tf.broadcast_to(tf.range(b), [self.time_steps, b])
        shown = tf.gather_nd(bits, tf.stack([batch_index, tf.broadcast_to(read_index, [self.time_steps, b])], -1))
        written = tf.gather_nd(bits, tf.stack([batch_index, write_index], -1))

        def flag(condition, values=None):
            values = tf.ones_like(condition, tf.float32) if values is None else values
            return tf.where(condition, values, 0.0)[..., None]

        start = flag(tf.broadcast_to(t == 0, [self.time_steps, b]))
        count = flag(count_step, tf.broadcast_to(tf.cast(repeats, tf.float32) / self.norm_max, [self.time_steps, b]))
        observations = tf.concat([shown * flag(pattern_steps), start, count], axis=-1)
        targets = tf.concat([written * flag(target_steps), flag(end_step)], axis=-1)
        mask = tf.cast(target_steps | end_step, tf.float32)
        return Batch(observations, targets, mask)


def masked_sigmoid_cross_entropy(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Sigmoid cross-entropy summed over bits and masked time, averaged over the batch (nats).

    Args:
      logits, targets: [T, B, C].
      mask: [T, B].
    """
    xent = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    per_step = tf.reduce_sum(xent, axis=2) * tf.cast(mask, xent.dtype)
    return tf.reduce_sum(per_step) / tf.cast(tf.shape(logits)[1], xent.dtype)


def bit_errors(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Wrong bits (rounded predictions) on the masked steps, per sequence (mean over the batch)."""
    wrong = tf.cast(tf.not_equal(tf.cast(logits > 0, targets.dtype), targets), tf.float32)
    per_step = tf.reduce_sum(wrong, axis=2) * tf.cast(mask, tf.float32)
    return tf.reduce_sum(per_step) / tf.cast(tf.shape(logits)[1], tf.float32)


@dataclasses.dataclass(frozen=True)
class RepeatCopyTask:
    """The repeat-copy task as `train.py` drives it: batches, loss, metrics, held-out sets.

    Training batch i is drawn from the seed (seed, i) (a replica of a multi-replica run
    takes its rows of it), so a resumed run sees exactly the batches it would have seen.
    Held-out batches come from another seed stream, never used for training; each
    generalisation task draws longer sequences than training does.

    Attributes:
      train: the training distribution.
      eval_sequences: held-out sequences per evaluation set (1,000 in the reproduction).
      eval_batch_size: sequences per held-out batch.
      generalization: extra held-out distributions, by name (longer patterns, more repeats).
      solved_loss: the task counts as solved when the held-out loss is below this (nats)
        and no held-out bit is wrong.
    """

    train: RepeatCopy = RepeatCopy()
    eval_sequences: int = 1000
    eval_batch_size: int = 100
    generalization: tuple[tuple[str, RepeatCopy], ...] = (
        ("length_3_4", RepeatCopy(min_length=3, max_length=4)),
        ("repeats_3_4", RepeatCopy(min_repeats=3, max_repeats=4)),
    )
    solved_loss: float = 0.1

    @property
    def input_size(self) -> int:
        return self.train.observation_size

    @property
    def output_size(self) -> int:
        return self.train.target_size

    @property
    def batch_size(self) -> int:
        return self.train.batch_size

    def dataset(self, seed: int, start_step: int, context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """This input pipeline's per-replica training batches for steps start_step, start_step + 1, ...

        The global batch of step s is drawn from the seed (seed, s); replica r of R takes
        its rows [r B / R, (r + 1) B / R). So the data is a pure function of (seed, step),
        a resumed run sees the batches it would have seen, and R replicas together see
        exactly the batch one device sees. Elements come in the order
        `strategy.distribute_datasets_from_function` deals them: step by step, one per
        replica of this pipeline.

        Args:
          seed: the run's seed.
          start_step: the first step to draw.
          context: the input context the strategy passes (None: one replica).

        Raises:
          ValueError: the batch size does not split evenly over the replicas.
        """
        context = context or tf.distribute.InputContext()
        replicas, pipelines = context.num_replicas_in_sync, context.num_input_pipelines
        if self.batch_size % replicas or replicas % pipelines:
            raise ValueError(f"RepeatCopyTask: batch size {self.batch_size} does not split over {replicas} replicas")
        size, local = self.batch_size // replicas, replicas // pipelines
        first_replica = context.input_pipeline_id * local

        def element(index):
            step, replica = index // local, first_replica + index % local
            batch = self.train.batch(tf.stack([tf.constant(seed, tf.int64), step]), self.batch_size)
            return tf.nest.map_structure(lambda x: x[:, replica * size : (replica + 1) * size], batch)

        first = tf.constant(start_step * local, tf.int64)
        return tf.data.Dataset.range(first, tf.int64.max).map(element).prefetch(2)

    def evaluate(self, logits_fn, seed: int) -> dict[str, dict[str, float]]:
        """Loss and bit errors per held-out set: "held_out" (the training distribution) and
        each generalisation set, over `eval_sequences` sequences each.

        Args:
          logits_fn: observations [T, B, C] -> logits [T, B, C'].
          seed: the run's seed; held-out batches come from a stream training never uses.
        """
        results = {}
        for index, (name, task) in enumerate((("held_out", self.train), *self.generalization)):
            totals, count = {}, 0
            for i in range(-(-self.eval_sequences // self.eval_batch_size)):
                size = min(self.eval_batch_size, self.eval_sequences - i * self.eval_batch_size)
                # Negative steps: a stream the training seeds (seed, i >= 0) never reach.
                batch = _batch_fn(task)(tf.constant([seed, -1 - i - 1_000_000 * index], tf.int64), size)
                for key, value in self.metrics(logits_fn(batch.observations), batch).items():
                    totals[key] = totals.get(key, 0.0) + float(value) * size
                count += size
            results[name] = {key: value / count for key, value in totals.items()}
        return results

    def loss(self, logits: tf.Tensor, batch: Batch) -> tf.Tensor:
        return masked_sigmoid_cross_entropy(logits, batch.targets, batch.mask)

    def metrics(self, logits: tf.Tensor, batch: Batch) -> dict[str, tf.Tensor]:
        return {
            "loss": self.loss(logits, batch),
            "bit_errors": bit_errors(logits, batch.targets, batch.mask),
        }

    def is_solved(self, results: dict[str, dict[str, float]]) -> bool:
        held_out = results["held_out"]
        return held_out["loss"] < self.solved_loss and held_out["bit_errors"] == 0.0


def _batch_fn(task: RepeatCopy):
    """A traced `task.batch`, one per task, so drawing a batch is one call, not dozens of ops."""
    fn = _BATCH_FNS.get(task)
    if fn is None:
        fn = _BATCH_FNS[task] = tf.function(task.batch, reduce_retracing=True, autograph=False)
    return fn


_BATCH_FNS: dict = {}
