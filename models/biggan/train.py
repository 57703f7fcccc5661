"""Trains a class-conditional BigGAN: the whole training setup in one file, configured by gin.

    python -m models.biggan.train --workdir=/tmp/biggan --gin_config=models/biggan/configs/shapes32.gin \\
        [--gin_bindings='train.num_steps=1000'] [--seed=3] [--strategy=mirrored --replicas=2]

The file reads top to bottom: the settings, the task, the strategy, the networks and
the optimizers, the checkpoint, the step, the loop. It has the shape of every model's
`train.py` in this repository (`models/dnc/train.py` first); only the networks, the
task, the step and the evaluation differ.

A step is `task.d_steps` discriminator updates (hinge loss on real and fake), then one
generator update (hinge loss plus the off-diagonal orthogonal regulariser), each with
its own Adam (BigGAN: betas 0 and 0.999, separate learning rates), then the update of
the generator's exponential moving average (from `train.ema_start` on), which is what
samples and evaluations use. With more than one replica in sync the generator's batch
norms are cross-replica (`core.CrossReplicaBatchNorm`): statistics over the global
batch, as one device would compute them.

Everything a run writes is in `--workdir`: TensorBoard summaries (train/ and eval/, the
sample grid as an image), sample grids as PNG (samples/), checkpoints (checkpoints/),
and the operative gin config (config.gin). Started again with the same workdir, a run
resumes from its newest readable checkpoint (the step, both networks, the average, both
optimizers, the spectral norms' vectors), and since the batch of step s is a pure
function of (seed, s), it sees the batches it would have seen without the stop: a
resumed run ends with the same weights, bit for bit, as one that never stopped.

A step whose losses, gradients or updated weights are not finite is never saved. By
default the run then stops with an error that names the step, its last checkpoint
(always finite) in force; `train.on_nonfinite = "skip"` undoes such steps (every
variable as before the step), counts them and goes on.

Evaluation (every `train.eval_every` steps and at the end) copies the average into a
one-device sampler, recomputes its batch-norm statistics (standing statistics), writes
the grid of fixed latents and classes, and, with `train.eval_examples` > 0, computes FID
and Inception Score against real images and the accuracy of the samples' classes
under the feature extractor's classifier. The extractor is the Inception network at
`train.inception_path` (a SavedModel the user has; nothing here downloads it) or, by
default, the offline classifier trained on shapes32 (`metrics.offline_extractor`),
whose numbers are NOT comparable with published FIDs.

Strategies (`--strategy`): "default", one device; "mirrored", data parallel over this
machine's GPUs (or, on a machine without one, `--replicas` logical CPUs);
"multi_worker", data parallel over the machines of a cluster, each running this same
command with its own TF_CONFIG (the chief writes checkpoints and summaries; the other
workers write theirs below workdir/workers/); "tpu", a TPU at `--tpu`. Each replica
computes its share of the global batch; gradients are all-reduced and every replica
applies the same update, so R replicas train as one device on the whole batch does.
"""

import contextlib
import dataclasses
import difflib
import glob
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import gin
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

import core
from models.biggan import biggan, data, gan, metrics, sampling

# What the gin files configure. Model files never import gin; this file registers them.
gin.external_configurable(biggan.Generator, module="biggan")
gin.external_configurable(biggan.Discriminator, module="biggan")
gin.external_configurable(data.GANTask, module="data")
gin.external_configurable(data.shapes32, module="data")
gin.external_configurable(data.tfds_images, module="data")
gin.external_configurable(core.optimizers.Adam, module="optimizers")
gin.external_configurable(core.optimizers.SGD, module="optimizers")


# --- the settings ------------------------------------------------------------------------


@gin.configurable("train")
@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run is configured by; gin files set them as `train.<name> = value`.

    Attributes:
      task: a `data.GANTask`: the real images, the global batch size, the
        discriminator steps per generator step, the latent size.
      generator: (cross_replica, name) -> `biggan.Generator`; gin's `@biggan.Generator`
        with its sizes bound. `cross_replica` is set here: True whenever more than one
        replica is in sync.
      discriminator: (name) -> `biggan.Discriminator`; gin's `@biggan.Discriminator`.
      g_optimizer, d_optimizer: `core.optimizers` instances, one per network (BigGAN:
        Adam with betas 0 and 0.999; the paper's learning rates 5e-5 and 2e-4).
      ortho_beta: strength of the generator's off-diagonal orthogonal regularisation
        (the paper's 1e-4; 0 turns it off, as BigGAN-PyTorch does).
      ema_decay: decay of the moving average of the generator's weights (0.9999).
      ema_start: the first step that averages; before it the average copies the
        generator (BigGAN-PyTorch: 20,000).
      seed: the run's seed: initial weights, batches, everything (`--seed` sets it).
      num_steps: train until this many steps (generator updates) in all (a resumed run
        counts those done).
      jit_compile: compile each replica's forward and backward passes with XLA.
      on_nonfinite: what a step with a non-finite loss, gradient or updated weight
        does: "stop" the run with an error (nothing non-finite is saved), or "skip" it
        (every variable stays as before the step) and go on.
      log_every: steps between progress lines and train summaries.
      eval_every: steps between evaluations and sample grids (also at the end).
      checkpoint_every: steps between checkpoints (also at the end).
      keep_checkpoints: how many of the newest checkpoints to keep.
      eval_examples: samples (and real images) for FID, Inception Score and class
        accuracy; 0: sample grids only.
      inception_path: a SavedModel of the Inception network for FID and IS (see
        `metrics.SavedModelExtractor`); None: the offline shapes32 classifier.
      standing_batches: forward passes of 64 samples whose batch-norm statistics the
        sampler uses (the paper's standing statistics: about 100).
      truncation: latents of samples and evaluations drawn from a normal truncated
        (by resampling) at this threshold; None: not truncated.
      grid_rows: rows of the sample grid; its columns are the classes (at most 10),
        its latents and classes fixed by the seed for the whole run.
    """

    task: Any = gin.REQUIRED
    generator: Callable[..., biggan.Generator] = gin.REQUIRED
    discriminator: Callable[..., biggan.Discriminator] = gin.REQUIRED
    g_optimizer: Any = gin.REQUIRED
    d_optimizer: Any = gin.REQUIRED
    ortho_beta: float = 1e-4
    ema_decay: float = 0.9999
    ema_start: int = 20_000
    seed: int = 0
    num_steps: int = 100_000
    jit_compile: bool = True
    on_nonfinite: str = "stop"
    log_every: int = 100
    eval_every: int = 5_000
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 3
    eval_examples: int = 10_000
    inception_path: str | None = None
    standing_batches: int = 100
    truncation: float | None = None
    grid_rows: int = 8

    def __post_init__(self):
        for name in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
            _check(name, _is_int(getattr(self, name)) and getattr(self, name) >= 1, "a positive integer")
        for name in ("standing_batches", "grid_rows"):
            _check(name, _is_int(getattr(self, name)) and getattr(self, name) >= 1, "a positive integer")
        for name in ("ema_start", "eval_examples"):
            _check(name, _is_int(getattr(self, name)) and getattr(self, name) >= 0, "a non-negative integer")
        _check("seed", _is_int(self.seed) and 0 <= self.seed < 2**31, "an integer in [0, 2**31)")
        _check("jit_compile", isinstance(self.jit_compile, bool), "True or False")
        _check("on_nonfinite", self.on_nonfinite in ("stop", "skip"), '"stop" or "skip"')
        _check("ortho_beta", _is_number(self.ortho_beta) and self.ortho_beta >= 0, "a non-negative number")
        _check("ema_decay", _is_number(self.ema_decay) and 0 <= self.ema_decay < 1, "a number in [0, 1)")
        trunc = self.truncation
        _check("truncation", trunc is None or (_is_number(trunc) and trunc > 0), "a positive number or None")
        path = self.inception_path
        _check("inception_path", path is None or (isinstance(path, str) and path), "a SavedModel directory or None")
        for name in ("g_optimizer", "d_optimizer"):
            _check(
                name, callable(getattr(getattr(self, name), "apply", None)), "an optimizer such as @optimizers.Adam()"
            )
        _check(
            "g_optimizer",
            self.g_optimizer is not self.d_optimizer,
            "another optimizer than train.d_optimizer (scope them)",
        )
        _check("generator", callable(self.generator), "a callable that makes the generator, such as @biggan.Generator")
        _check("discriminator", callable(self.discriminator), "a callable that makes it, such as @biggan.Discriminator")
        for attribute in ("dataset", "batch_size", "d_steps", "dim_z", "num_classes", "resolution"):
            _check("task", hasattr(self.task, attribute), f"a data.GANTask (it has no {attribute})")


def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"train.{name} must be {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass
class Result:
    """What a run did, in numbers: the last step, every logged line, the last evaluation."""

    step: int
    history: list[dict[str, float]]
    eval: dict[str, dict[str, float]]
    skipped_steps: int
    steps_per_second: float | None


class NonFiniteError(RuntimeError):
    """A step's losses, gradients or updated weights were not finite (nothing of it was saved)."""


@dataclasses.dataclass
class Networks:
    """The networks of a run: the two trained, the generator's average, and its one-device sampler."""

    generator: biggan.Generator
    discriminator: biggan.Discriminator
    average: biggan.Generator
    sampler: biggan.Generator | None = None


# --- the run -------------------------------------------------------------------------------


def train(
    settings: Settings,
    workdir: str,
    strategy: tf.distribute.Strategy | None = None,
    extractor: metrics.Extractor | None = None,
) -> Result:
    """Runs (or resumes) training in `workdir`.

    Args:
      settings: what to train and how.
      workdir: where the run's checkpoints, summaries, samples and config go.
      strategy: how to spread the work over devices; None: the default strategy.
      extractor: the (features, logits) extractor for the evaluation; None: the one
        `settings.inception_path` names (made only if `settings.eval_examples` > 0).

    Raises:
      NonFiniteError: a step's losses, gradients or updated weights were not finite and
        `settings.on_nonfinite` is "stop"; the newest checkpoint is the last good state.
      ValueError: the global batch does not split evenly over the replicas, or the
        networks do not fit the data (classes, resolution, latent size).
    """
    strategy = strategy or tf.distribute.get_strategy()
    task, replicas = settings.task, strategy.num_replicas_in_sync
    if task.batch_size % replicas:
        raise ValueError(f"the batch size {task.batch_size} does not split evenly over {replicas} replicas")
    core.utils.set_seed(settings.seed)
    chief = core.distribute.is_chief(strategy)
    outdir = core.distribute.worker_dir(strategy, workdir)
    os.makedirs(outdir, exist_ok=True)

    # The networks and the optimizers, their variables built once, by one eager call.
    example = next(iter(task.dataset(settings.seed, 0, tf.distribute.InputContext())))
    with strategy.scope():
        nets = make_networks(settings, task, cross_replica=replicas > 1)
        gan_step = gan.GANStep(
            nets.generator,
            nets.discriminator,
            settings.g_optimizer,
            settings.d_optimizer,
            d_steps=task.d_steps,
            ortho_beta=settings.ortho_beta,
            jit_compile=settings.jit_compile,
        )
        # In a replica context: a cross-replica generator's layers are made for one.
        strategy.run(
            lambda b: (gan_step.build(b), nets.average(b.z[0], b.fake_labels[0], is_training=False)), (example,)
        )
        gan_step.build_optimizers()
        gan_step.average = sampling.WeightAverage(
            nets.generator, nets.average, decay=settings.ema_decay, start_step=settings.ema_start
        )
        gan_step.average.copy()
        step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        skipped_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")
    # The sampler: the average's copy on one device, for samples and evaluations.
    nets.sampler = settings.generator(cross_replica=False, name="sampler")
    nets.sampler(example.z[0], example.fake_labels[0], is_training=False)

    # The checkpoint: resumes from the newest readable one by itself.
    checkpoint = tf.train.Checkpoint(
        generator=nets.generator,
        discriminator=nets.discriminator,
        g_ema=nets.average,
        g_optimizer=settings.g_optimizer,
        d_optimizer=settings.d_optimizer,
        step=step_counter,
        skipped=skipped_counter,
    )
    manager = checkpoint_manager(checkpoint, os.path.join(outdir, "checkpoints"), settings.keep_checkpoints)
    resumed_from = restore_newest(checkpoint, os.path.join(workdir, "checkpoints"))
    step, skipped = int(step_counter.numpy()), int(skipped_counter.numpy())
    if resumed_from:
        logging.info("resumed from %s at step %d", resumed_from, step)
    if chief:
        record_config(workdir, step)

    # The data: this process's per-replica batches, from the step the run is at.
    batches = iter(strategy.distribute_datasets_from_function(lambda ctx: task.dataset(settings.seed, step, ctx)))
    train_step = make_train_step(gan_step, settings, strategy, step_counter, skipped_counter)
    if extractor is None and settings.eval_examples:
        extractor = make_extractor(settings.inception_path)
    evaluation = Evaluation(settings, task, nets, extractor)

    # The loop.
    writers = {name: summary_writer(chief, outdir, name) for name in ("train", "eval")}
    result = Result(step, [], {}, skipped, None)
    sums, count, clock, clock_step = {}, 0, time.perf_counter(), step
    while step < settings.num_steps:
        figures_of_step, finite = train_step(batches)
        step += 1
        if not finite:
            last_good = manager.latest_checkpoint or resumed_from
            skipped += 1
            if settings.on_nonfinite == "stop":
                raise NonFiniteError(
                    f"step {step}: a loss, a gradient or the updated weights are not finite ("
                    + _figures(figures_of_step)
                    + "); nothing non-finite was saved ("
                    + (f"{last_good} is the last good state" if last_good else "no checkpoint yet")
                    + '); lower the learning rates, or set train.on_nonfinite = "skip" to skip such steps'
                )
            logging.warning("step %d: non-finite loss or gradient, skipped (%d so far)", step, skipped)
        else:
            for key, value in figures_of_step.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
        last = step == settings.num_steps
        if step % settings.log_every == 0 or last:
            now = time.perf_counter()
            rate = (step - clock_step) / (now - clock)
            figures = {key: value / count for key, value in sums.items()} if count else {}
            result.history.append({"step": step, **figures, "skipped_steps": skipped})
            result.steps_per_second, result.skipped_steps = rate, skipped
            write_scalars(writers["train"], step, {**figures, "steps_per_second": rate, "skipped_steps": skipped})
            logging.info(progress(step, settings.num_steps, figures, rate))
            sums, count, clock, clock_step = {}, 0, now, step
        if step % settings.eval_every == 0 or last:
            result.eval = evaluation(step, writers["eval"], outdir if chief else None)
            logging.info("eval %s", "; ".join(f"{n}: " + _figures(f) for n, f in result.eval.items()))
        if step % settings.checkpoint_every == 0 or last:
            manager.save(checkpoint_number=step)
    result.step, result.skipped_steps = step, skipped
    for writer in writers.values():
        writer.flush()
    if not chief:  # a worker's copy of the chief's files, and their folder once the last is gone
        shutil.rmtree(outdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(outdir))
    return result


def make_networks(settings: Settings, task: Any, cross_replica: bool) -> Networks:
    """The generator (cross-replica if asked), the discriminator and the average, unbuilt
    (the sampler is made apart, on one device); checks that they fit the task's data."""
    generator = settings.generator(cross_replica=cross_replica, name="generator")
    discriminator = settings.discriminator(name="discriminator")
    for net in (generator, discriminator):
        for what in ("num_classes", "resolution"):
            if getattr(net, what) != getattr(task, what):
                raise ValueError(
                    f"the {net.name}'s {what} is {getattr(net, what)} but the data's ({task.images.name}) is "
                    f"{getattr(task, what)}; bind biggan.{type(net).__name__}.{what} to match"
                )
    if generator.dim_z != task.dim_z:
        raise ValueError(
            f"the generator's dim_z is {generator.dim_z} but data.GANTask.dim_z is {task.dim_z}; bind them alike"
        )
    return Networks(generator, discriminator, settings.generator(cross_replica=False, name="g_ema"), None)


def make_train_step(
    gan_step: gan.GANStep,
    settings: Settings,
    strategy: tf.distribute.Strategy,
    step_counter: tf.Variable,
    skipped_counter: tf.Variable,
) -> Callable[[Any], tuple[dict[str, float], bool]]:
    """One training step over the next distributed batch: (mean metrics, whether it was finite).

    `gan.GANStep.replica_step` does the work on each replica: each forward and backward
    pass is a `tf.function`, compiled by XLA when `settings.jit_compile`; the
    all-reduces, the finiteness checks and the updates run around them, outside XLA
    (XLA compiles for one device, so it cannot hold the cross-replica all-reduce on a
    CPU). A step some update of which was not finite applies nothing after it; with
    `on_nonfinite = "skip"` every variable is then put back as it was before the step.
    """
    skip = settings.on_nonfinite == "skip"
    nets = (gan_step.generator, gan_step.discriminator, gan_step.average.networks[1])
    state = [v for net in nets for v in net.variables]
    state += list(gan_step.g_optimizer.variables) + list(gan_step.d_optimizer.variables)

    def replica_step(batch):
        before = [tf.identity(v) for v in state] if skip else []
        metrics, finite = gan_step.replica_step(batch, step_counter)
        if skip:
            # Outside control flow: some of these writes synchronise the replicas.
            for v, b in zip(state, before):
                v.assign(tf.where(finite, v, b))
        step_counter.assign_add(1)
        skipped_counter.assign_add(1 - tf.cast(finite, tf.int64))
        metrics = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, metrics)
        return metrics, finite

    # No autograph: the step's control flow is explicit (tf.cond), and converting every
    # module's code would multiply the tracing time.
    @tf.function(autograph=False)
    def step(batches):
        # Every replica holds the same means and verdict; this process reads its first's.
        metrics, finite = strategy.run(replica_step, args=(next(batches),))
        return tf.nest.map_structure(lambda x: strategy.experimental_local_results(x)[0], (metrics, finite))

    def run(batches):
        metrics, finite = step(batches)
        return {key: float(value) for key, value in metrics.items()}, bool(finite)

    return run


def make_extractor(inception_path: str | None) -> metrics.Extractor:
    """The Inception network at `inception_path`, or the offline shapes32 classifier (None)."""
    if inception_path is None:
        logging.info("FID and IS from the offline shapes32 classifier: not comparable with published numbers")
        return metrics.offline_extractor()
    return metrics.SavedModelExtractor(inception_path)


class Evaluation:
    """Samples and figures of the generator's average, on the one-device sampler.

    Each call copies the average's weights into the sampler, recomputes its batch-norm
    statistics (`sampling.standing_statistics`), writes the grid of the run's fixed
    latents and classes (to TensorBoard, and as samples/step_<step>.png), and returns
    {"samples": {"fid", "inception_score", "inception_score_std", "accuracy"}} for
    `eval_examples` samples (the accuracy of their classes under the extractor's logits,
    where it classifies the data's classes), or {} without an extractor or examples.
    """

    BATCH = 250

    def __init__(self, settings: Settings, task: Any, nets: Networks, extractor: metrics.Extractor | None):
        self.settings, self.task, self.nets, self.extractor = settings, task, nets, extractor
        n = task.num_classes
        self.columns = min(n, 10)
        rows = settings.grid_rows
        classes = np.arange(self.columns) * n // self.columns  # spread over the classes when there are many
        self.grid_y = tf.constant(np.tile(classes, rows), tf.int32)
        self.grid_z = sampling.truncated_normal(
            [rows * self.columns, task.dim_z], [settings.seed, 1_000_001], settings.truncation
        )
        self._generate = tf.function(lambda z, y: nets.sampler(z, y, is_training=False), autograph=False)
        self._real: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, step: int, writer: tf.summary.SummaryWriter, outdir: str | None) -> dict[str, dict[str, float]]:
        settings = self.settings
        for target, source in zip(self.nets.sampler.variables, self.nets.average.variables):
            target.assign(source.read_value())
        sampling.standing_statistics(
            self.nets.sampler, settings.standing_batches, 64, seed=settings.seed, threshold=settings.truncation
        )
        grid = sampling.image_grid(self._generate(self.grid_z, self.grid_y).numpy(), self.columns)
        with writer.as_default(step=step):
            tf.summary.image("samples", grid[None])
        if outdir is not None:
            os.makedirs(os.path.join(outdir, "samples"), exist_ok=True)
            sampling.write_png(os.path.join(outdir, "samples", f"step_{step:08d}.png"), grid)
        if not settings.eval_examples or self.extractor is None:
            return {}
        count = settings.eval_examples
        if self._real is None:  # the real side is the same at every evaluation
            indices = tf.range(min(count, self.task.images.size), dtype=tf.int64)
            images = np.concatenate(
                [
                    self.task.images.read(indices[i : i + self.BATCH])[0].numpy()
                    for i in range(0, int(indices.shape[0]), self.BATCH)
                ]
            )
            features, _ = metrics.extract(self.extractor, images.astype(np.float32) / 127.5 - 1.0, self.BATCH)
            self._real = features
        fakes, labels = [], []
        for i, start in enumerate(range(0, count, self.BATCH)):
            size = min(self.BATCH, count - start)
            z = sampling.truncated_normal([size, self.task.dim_z], [settings.seed, 2_000_000 + i], settings.truncation)
            y = tf.random.stateless_uniform([size], [settings.seed, 3_000_000 + i], 0, self.task.num_classes, tf.int32)
            fakes.append(self._generate(z, y).numpy())
            labels.append(y.numpy())
        features, logits = metrics.extract(self.extractor, np.concatenate(fakes), self.BATCH)
        labels = np.concatenate(labels)
        score, spread = metrics.inception_score(logits)
        figures = {
            "fid": metrics.fid_from_features(self._real, features),
            "inception_score": score,
            "inception_score_std": spread,
        }
        if logits.shape[1] == self.task.num_classes:
            figures["accuracy"] = float(np.mean(np.argmax(logits, axis=1) == labels))
        return {"samples": figures}


# --- checkpoints, records and summaries ---------------------------------------------------


def checkpoint_manager(checkpoint: tf.train.Checkpoint, directory: str, keep: int) -> tf.train.CheckpointManager:
    """A CheckpointManager for `directory`, which sets aside a corrupt state file instead of failing.

    The state file ("checkpoint") only lists the checkpoints; the run finds them by
    their files (`restore_newest`), so a damaged list loses nothing.
    """
    try:
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)
    except Exception as e:  # a state file that does not parse
        state = os.path.join(directory, "checkpoint")
        logging.warning("checkpoint list %s is unreadable (%s); setting it aside as %s.corrupt", state, e, state)
        os.replace(state, state + ".corrupt")
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)


def restore_newest(checkpoint: tf.train.Checkpoint, directory: str) -> str | None:
    """Restores the newest readable checkpoint in `directory`; returns its path (None: there is none).

    Checkpoints are found by their index files, newest step first, so a missing, empty
    or damaged state file does not matter; an unreadable checkpoint (a truncated file)
    is reported and the one before it is tried.

    Raises:
      RuntimeError: checkpoints exist but none can be read, naming each and why.
    """
    paths = glob.glob(os.path.join(directory, "ckpt-*.index"))
    numbered = [(int(m.group(1)), p[: -len(".index")]) for p in paths if (m := re.search(r"ckpt-(\d+)\.index$", p))]
    failures = []
    for _, path in sorted(numbered, reverse=True):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            logging.warning("checkpoint %s is unreadable (%s); trying the one before", path, reason)
            failures.append(f"{path}: {reason}")
    if failures:
        raise RuntimeError("no checkpoint in {} can be read:\n  {}".format(directory, "\n  ".join(failures)))
    return None


def record_config(workdir: str, step: int) -> None:
    """Writes the operative gin config to workdir/config.gin.

    A resumed run whose config differs from the recorded one says so, line by line,
    and keeps the earlier record as config.before-step-<step>.gin.
    """
    path, config = os.path.join(workdir, "config.gin"), gin.operative_config_str()
    if os.path.exists(path):
        with open(path) as f:
            before = f.read()
        if before == config:
            return
        kept = os.path.join(workdir, f"config.before-step-{step}.gin")
        changes = [
            line
            for line in difflib.unified_diff(before.splitlines(), config.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        logging.warning(
            "the config differs from the one recorded in %s (kept as %s):\n%s", path, kept, "\n".join(changes)
        )
        os.replace(path, kept)
    with open(path + ".tmp", "w") as f:
        f.write(config)
    os.replace(path + ".tmp", path)


def summary_writer(chief: bool, workdir: str, name: str) -> tf.summary.SummaryWriter:
    """TensorBoard writer for workdir/<name> on the chief; a writer that writes nothing elsewhere."""
    return tf.summary.create_file_writer(os.path.join(workdir, name)) if chief else tf.summary.create_noop_writer()


def write_scalars(writer: tf.summary.SummaryWriter, step: int, values: dict[str, float]) -> None:
    with writer.as_default(step=step):
        for key, value in values.items():
            tf.summary.scalar(key, value)


def progress(step: int, total: int, figures: dict[str, float], rate: float) -> str:
    done = int(20 * step / total)
    eta = (total - step) / rate if rate > 0 else float("nan")
    bar = "#" * done + "." * (20 - done)
    return f"[{bar}] {step}/{total} {_figures(figures)} | {rate:.1f} steps/s, eta {eta / 60:.1f} min"


def _figures(figures: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in figures.items())


def restore(workdir: str, checkpoint: str | None = None) -> tuple[Any, biggan.Generator, int]:
    """The task and the trained generator's average of a run, from its workdir's config and checkpoint.

    Returns:
      (task, generator, step): the generator (one device, per-replica batch norm) with
      the average's weights of `checkpoint` (default: the newest readable one in the
      workdir) and the step it was saved at. Its batch-norm statistics are the
      generator's last; `sampling.standing_statistics` recomputes them for sampling.

    Raises:
      FileNotFoundError: if the workdir holds no config or no checkpoint.
    """
    config = os.path.join(workdir, "config.gin")
    if not os.path.exists(config):
        raise FileNotFoundError(f"{workdir} holds no config.gin; train a model there first")
    gin.clear_config()
    gin.parse_config_file(config)
    settings = Settings()
    generator = settings.generator(cross_replica=False, name="g_ema")
    example = next(iter(settings.task.dataset(settings.seed, 0, tf.distribute.InputContext())))
    generator(example.z[0], example.fake_labels[0], is_training=False)
    step = tf.Variable(0, dtype=tf.int64)
    saved = tf.train.Checkpoint(g_ema=generator, step=step)
    if checkpoint:
        saved.restore(checkpoint).expect_partial().assert_existing_objects_matched()
    elif restore_newest(saved, os.path.join(workdir, "checkpoints")) is None:
        raise FileNotFoundError(f"{workdir} holds no checkpoint; train a model there first")
    return settings.task, generator, int(step.numpy())


# --- the program ---------------------------------------------------------------------------


def define_flags() -> None:
    flags.DEFINE_multi_string("gin_config", [], "gin config files, applied in order")
    flags.DEFINE_multi_string("gin_bindings", [], "gin bindings, applied after the files (e.g. 'train.num_steps=10')")
    flags.DEFINE_string("workdir", None, "directory for checkpoints, summaries and the config; a run resumes from it")
    flags.DEFINE_integer("seed", None, "the run's seed; sets train.seed (default 0)", lower_bound=0)
    flags.DEFINE_enum("strategy", "default", list(core.distribute.STRATEGIES), "how to spread the work over devices")
    flags.DEFINE_integer("replicas", 0, "--strategy=mirrored without GPUs: split the CPU into this many", lower_bound=0)
    flags.DEFINE_string("tpu", None, "--strategy=tpu: the TPU's name or grpc:// address")


def parse_config(files: list[str], bindings: list[str], seed: int | None) -> None:
    """Applies gin files, then bindings, then `--seed`; every error names the file or binding.

    `--seed` is one more binding, `train.seed`; a config that binds another seed is an
    error rather than silently overridden.
    """
    for path in files:
        if not os.path.exists(path):
            raise ValueError(f"gin config {path} does not exist")
        try:
            gin.parse_config_file(path)
        except Exception as e:
            raise ValueError(f"gin config {path}: {type(e).__name__}: {e}") from e
    for binding in bindings:
        try:
            gin.parse_config(binding)
        except Exception as e:
            raise ValueError(f"gin binding {binding!r}: {type(e).__name__}: {e}") from e
    if seed is not None:
        try:
            bound = gin.query_parameter("train.seed")
        except ValueError:
            bound = None
        if bound is not None and bound != seed:
            raise ValueError(f"--seed={seed} disagrees with train.seed = {bound} in the config; give one of them")
        gin.bind_parameter("train.seed", seed)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.workdir is None:
        raise app.UsageError("--workdir is required")
    strategy = core.distribute.make_strategy(FLAGS.strategy, replicas=FLAGS.replicas, tpu=FLAGS.tpu)
    parse_config(FLAGS.gin_config, FLAGS.gin_bindings, FLAGS.seed)
    settings = Settings()
    try:
        os.makedirs(FLAGS.workdir, exist_ok=True)
        probe = os.path.join(FLAGS.workdir, ".writable")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        raise app.UsageError(f"--workdir={FLAGS.workdir} cannot be written: {e}") from e
    try:
        train(settings, FLAGS.workdir, strategy)
    except NonFiniteError as e:
        logging.error("%s", e)
        sys.exit(1)


FLAGS = flags.FLAGS

if __name__ == "__main__":
    define_flags()
    app.run(main)
