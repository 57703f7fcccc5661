"""Trains a DNC on repeat copy or bAbI: the whole training setup in one file, configured by gin.

    python -m models.dnc.train --workdir=/tmp/dnc --gin_config=models/dnc/configs/repeat_copy.gin \\
        [--gin_bindings='train.num_steps=1000'] [--seed=3] [--strategy=mirrored --replicas=2]

The file reads top to bottom: the settings, the task, the strategy, the model and the
optimizer, the checkpoint, the step, the loop. Every model's `train.py` in this
repository has this shape; only the model, the task and the step differ.

Everything a run writes is in `--workdir`: TensorBoard summaries (train/ and eval/),
checkpoints (checkpoints/), and the operative gin config (config.gin). Started again
with the same workdir, a run resumes from its newest readable checkpoint (the step, the
weights, the optimizer state), and since the batch of step s is a pure function of
(seed, s), it sees the batches it would have seen without the stop: a resumed run ends
with the same weights, bit for bit, as one that never stopped.

A step whose loss, gradients or updated weights are not finite is never saved. By
default the run then stops with an error that names the step, its last checkpoint
(always finite) in force; `train.on_nonfinite = "skip"` undoes such steps, counts them
and goes on.

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
from models.dnc import babi, dnc, repeat_copy

# What the gin files configure. Model files never import gin; this file registers them.
gin.external_configurable(dnc.DNC, module="dnc")
gin.external_configurable(repeat_copy.RepeatCopy, module="repeat_copy")
gin.external_configurable(repeat_copy.RepeatCopyTask, module="repeat_copy")
gin.external_configurable(babi.BabiTask, module="babi")
gin.external_configurable(core.optimizers.RMSProp, module="optimizers")
gin.external_configurable(core.optimizers.Adam, module="optimizers")
gin.external_configurable(core.initializers.RandomNormal, module="initializers")


# --- the settings ------------------------------------------------------------------------


@gin.configurable("train")
@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run is configured by; gin files set them as `train.<name> = value`.

    Attributes:
      task: `repeat_copy.RepeatCopyTask` or `babi.BabiTask`: the data, the loss, the
        metrics and the evaluation.
      model: (output_size) -> DNC; gin's `@dnc.DNC` with its sizes bound.
      optimizer: a `core.optimizers` instance (DeepMind's setup: RMSProp).
      seed: the run's seed: initial weights, batches, everything (`--seed` sets it).
      num_steps: train until this many steps in all (a resumed run counts those done).
      jit_compile: compile each replica's forward and backward pass with XLA (5 to 6x
        faster than `tf.function` alone at repeat-copy sizes on a CPU).
      clip_global_norm: clip gradients to this global norm (DeepMind's 50); None: no clip.
      recompute_chunk: unroll with `core.checkpointed_unroll` in chunks of this many
        steps, recomputing activations in the backward pass (large memories); None:
        `core.dynamic_unroll`, which stores them.
      on_nonfinite: what a step with a non-finite loss, gradient or updated weight
        does: "stop" the run with an error (nothing non-finite is saved), or "skip" it
        (the weights and optimizer state stay as before the step) and go on.
      log_every: steps between progress lines and train summaries.
      eval_every: steps between evaluations (also at the end).
      checkpoint_every: steps between checkpoints (also at the end).
      keep_checkpoints: how many of the newest checkpoints to keep.
      stop_when_solved: stop at the first evaluation the task calls solved.
    """

    task: Any = gin.REQUIRED
    model: Callable[..., dnc.DNC] = gin.REQUIRED
    optimizer: Any = gin.REQUIRED
    seed: int = 0
    num_steps: int = 100_000
    jit_compile: bool = True
    clip_global_norm: float | None = 50.0
    recompute_chunk: int | None = None
    on_nonfinite: str = "stop"
    log_every: int = 100
    eval_every: int = 5_000
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 3
    stop_when_solved: bool = False

    def __post_init__(self):
        for name in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
            _check(name, _is_int(getattr(self, name)) and getattr(self, name) >= 1, "a positive integer")
        _check("seed", _is_int(self.seed) and 0 <= self.seed < 2**31, "an integer in [0, 2**31)")
        _check("jit_compile", isinstance(self.jit_compile, bool), "True or False")
        _check("stop_when_solved", isinstance(self.stop_when_solved, bool), "True or False")
        _check("on_nonfinite", self.on_nonfinite in ("stop", "skip"), '"stop" or "skip"')
        clip = self.clip_global_norm
        _check("clip_global_norm", clip is None or (_is_number(clip) and clip > 0), "a positive number or None")
        chunk = self.recompute_chunk
        _check("recompute_chunk", chunk is None or (_is_int(chunk) and chunk >= 1), "a positive integer or None")
        _check(
            "optimizer", callable(getattr(self.optimizer, "apply", None)), "an optimizer such as @optimizers.RMSProp()"
        )
        _check("model", callable(self.model), "a callable that makes the model, such as @dnc.DNC")
        for method in ("dataset", "loss", "metrics", "evaluate", "is_solved"):
            _check("task", callable(getattr(self.task, method, None)), f"a task (it has no {method} method)")


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
    solved_at: int | None
    skipped_steps: int
    steps_per_second: float | None


class NonFiniteError(RuntimeError):
    """A step's loss, gradients or updated weights were not finite (nothing of it was saved)."""


# --- the run -------------------------------------------------------------------------------


def train(
    settings: Settings,
    workdir: str,
    strategy: tf.distribute.Strategy | None = None,
    model: dnc.DNC | None = None,
) -> Result:
    """Runs (or resumes) training in `workdir`.

    Args:
      settings: what to train and how.
      workdir: where the run's checkpoints, summaries and config go.
      strategy: how to spread the work over devices; None: the default strategy.
      model: the model to train, made under `strategy.scope()` (to look at it
        afterwards); None makes one with `settings.model`.

    Raises:
      NonFiniteError: a step's loss, gradients or updated weights were not finite and
        `settings.on_nonfinite` is "stop"; the newest checkpoint is the last good state.
      ValueError: the global batch does not split evenly over the replicas.
    """
    strategy = strategy or tf.distribute.get_strategy()
    task, replicas = settings.task, strategy.num_replicas_in_sync
    if task.batch_size % replicas:
        raise ValueError(f"the batch size {task.batch_size} does not split evenly over {replicas} replicas")
    core.utils.set_seed(settings.seed)
    chief = core.distribute.is_chief(strategy)
    outdir = core.distribute.worker_dir(strategy, workdir)
    os.makedirs(outdir, exist_ok=True)

    # The model and the optimizer, their variables built once, by one eager call.
    with strategy.scope():
        model = model or settings.model(output_size=task.output_size)
        example = next(iter(task.dataset(settings.seed, 0, tf.distribute.InputContext())))
        unroll(model, example.observations[:1], settings.recompute_chunk)
        optimizer = settings.optimizer
        optimizer.build(model.trainable_variables)
        step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        skipped_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")

    # The checkpoint: resumes from the newest readable one by itself.
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_counter, skipped=skipped_counter)
    manager = checkpoint_manager(checkpoint, os.path.join(outdir, "checkpoints"), settings.keep_checkpoints)
    resumed_from = restore_newest(checkpoint, os.path.join(workdir, "checkpoints"))
    step, skipped = int(step_counter.numpy()), int(skipped_counter.numpy())
    if resumed_from:
        logging.info("resumed from %s at step %d", resumed_from, step)
    if chief:
        record_config(workdir, step)

    # The data: this process's per-replica batches, from the step the run is at.
    batches = iter(strategy.distribute_datasets_from_function(lambda ctx: task.dataset(settings.seed, step, ctx)))
    train_step = make_train_step(model, optimizer, settings, strategy, step_counter, skipped_counter)
    # Evaluation is rare and its shapes vary (longer sequences, a last partial batch):
    # not worth an XLA compile per shape.
    predict = tf.function(lambda x: unroll(model, x, settings.recompute_chunk), autograph=False)

    # The loop.
    writers = {name: summary_writer(chief, outdir, name) for name in ("train", "eval")}
    result = Result(step, [], {}, None, skipped, None)
    sums, count, clock, clock_step = {}, 0, time.perf_counter(), step
    while step < settings.num_steps:
        metrics, finite = train_step(batches)
        step += 1
        if not finite:
            skipped += 1
            if settings.on_nonfinite == "stop":
                raise NonFiniteError(
                    f"step {step}: the loss, a gradient or the updated weights are not finite (loss "
                    f"{metrics['loss']:.4g}); nothing non-finite was saved ("
                    + (
                        f"{manager.latest_checkpoint} is the last good state"
                        if manager.latest_checkpoint
                        else "no checkpoint yet"
                    )
                    + '); lower the learning rate, or set train.on_nonfinite = "skip" to skip such steps'
                )
            logging.warning("step %d: non-finite loss or gradient, skipped (%d so far)", step, skipped)
        else:
            for key, value in metrics.items():
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
        solved = False
        if step % settings.eval_every == 0 or last:
            result.eval = task.evaluate(predict, settings.seed)
            for name, figures in result.eval.items():
                write_scalars(writers["eval"], step, {f"{name}/{k}": v for k, v in figures.items()})
            logging.info("eval %s", "; ".join(f"{n}: " + _figures(f) for n, f in result.eval.items()))
            if result.solved_at is None and task.is_solved(result.eval):
                result.solved_at = step
                solved = settings.stop_when_solved
                logging.info("solved at step %d", step)
        if step % settings.checkpoint_every == 0 or last or solved:
            manager.save(checkpoint_number=step)
        if solved:
            break
    result.step, result.skipped_steps = step, skipped
    for writer in writers.values():
        writer.flush()
    if not chief:  # a worker's copy of the chief's files, and their folder once the last is gone
        shutil.rmtree(outdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(outdir))
    return result


def unroll(model: dnc.DNC, observations: tf.Tensor, recompute_chunk: int | None) -> tf.Tensor:
    """The model's outputs [T, B, output_size] over time-major `observations`, from its initial state."""
    state = model.initial_state(tf.shape(observations)[1])
    if recompute_chunk:
        return core.checkpointed_unroll(model, observations, state, recompute_chunk)[0]
    return core.dynamic_unroll(model, observations, state)[0]


def make_train_step(
    model: dnc.DNC,
    optimizer: Any,
    settings: Settings,
    strategy: tf.distribute.Strategy,
    step_counter: tf.Variable,
    skipped_counter: tf.Variable,
) -> Callable[[Any], tuple[dict[str, float], bool]]:
    """One training step over the next distributed batch: (mean metrics, whether it was finite).

    Each replica's forward and backward pass is one `tf.function`, compiled by XLA when
    `settings.jit_compile`; the all-reduce, the clipping, the finiteness check and the
    update run around it, outside XLA (XLA compiles for one device, so it cannot hold
    the cross-replica all-reduce on a CPU; on one device it costs nothing to split).
    """
    task, params = settings.task, list(model.trainable_variables)
    skip = settings.on_nonfinite == "skip"

    def loss_and_grads(batch):
        with tf.GradientTape() as tape:
            outputs = unroll(model, batch.observations, settings.recompute_chunk)
            loss = task.loss(outputs, batch)
        return tape.gradient(loss, params), task.metrics(outputs, batch)

    # No AutoGraph here or below: the control flow is explicit (tf.cond), and converting
    # every module's code would only multiply the tracing time.
    compiled = tf.function(loss_and_grads, jit_compile=settings.jit_compile, autograph=False)

    def replica_step(batch):
        grads, metrics = compiled(batch)
        grads = core.distribute.all_reduce_gradients(grads)
        norm = tf.linalg.global_norm(grads)
        if settings.clip_global_norm:
            grads, _ = tf.clip_by_global_norm(grads, settings.clip_global_norm, use_norm=norm)
        # One verdict for all replicas: the reduced gradients are the same everywhere,
        # and a replica's non-finite loss counts for all.
        bad_loss = tf.cast(tf.logical_not(tf.math.is_finite(metrics["loss"])), tf.float32)
        bad_loss = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, bad_loss)
        finite = tf.math.is_finite(norm) & tf.equal(bad_loss, 0.0)

        def update():
            # Finite gradients can still overflow the weights (a huge learning rate);
            # "skip" then puts the weights and the optimizer's state back as they were.
            state = params + list(optimizer.variables) if skip else []
            before = [tf.identity(v) for v in state]
            optimizer.apply(grads, params)
            ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(p)) for p in params])
            if skip:
                tf.cond(ok, tf.no_op, lambda: tf.group([v.assign(b) for v, b in zip(state, before)]))
            return ok

        finite = tf.cond(finite, update, lambda: tf.constant(False))
        step_counter.assign_add(1)
        skipped_counter.assign_add(1 - tf.cast(finite, tf.int64))
        metrics = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, metrics)
        return metrics, finite

    @tf.function(autograph=False)
    def step(batches):
        # Every replica holds the same means and verdict; this process reads its first's.
        metrics, finite = strategy.run(replica_step, args=(next(batches),))
        return tf.nest.map_structure(lambda x: strategy.experimental_local_results(x)[0], (metrics, finite))

    def run(batches):
        metrics, finite = step(batches)
        return {key: float(value) for key, value in metrics.items()}, bool(finite)

    return run


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


def restore(workdir: str, checkpoint: str | None = None) -> tuple[Any, dnc.DNC, int]:
    """The task and trained model of a run, from its workdir's config and checkpoint.

    Returns:
      (task, model, step): the model with the weights of `checkpoint` (default: the
      newest readable one in the workdir) and the step it was saved at.

    Raises:
      FileNotFoundError: if the workdir holds no config or no checkpoint.
    """
    config = os.path.join(workdir, "config.gin")
    if not os.path.exists(config):
        raise FileNotFoundError(f"{workdir} holds no config.gin; train a model there first")
    gin.clear_config()
    gin.parse_config_file(config)
    settings = Settings()
    model = settings.model(output_size=settings.task.output_size)
    example = next(iter(settings.task.dataset(settings.seed, 0, tf.distribute.InputContext())))
    unroll(model, example.observations[:1], None)
    step = tf.Variable(0, dtype=tf.int64)
    saved = tf.train.Checkpoint(model=model, step=step)
    if checkpoint:
        saved.restore(checkpoint).expect_partial().assert_existing_objects_matched()
    elif restore_newest(saved, os.path.join(workdir, "checkpoints")) is None:
        raise FileNotFoundError(f"{workdir} holds no checkpoint; train a model there first")
    return settings.task, model, int(step.numpy())


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
