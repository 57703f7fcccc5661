"""Trains a DNC on repeat copy or bAbI: one readable file, configured by gin.

    python -m models.dnc.train --workdir=/tmp/dnc \
        --gin_config=models/dnc/configs/repeat_copy.gin [--gin_bindings='train.num_steps=1000']

Everything a run needs is in `--workdir`: TensorBoard summaries (train/ and eval/),
checkpoints (checkpoints/, written by `tf.train.CheckpointManager`: files first, then the
index that names them, so a crash mid-save leaves the previous checkpoint in force), and
the operative gin config. Started again with the same workdir, a run resumes from its
latest checkpoint: the step, the weights, the optimizer state; and since batch i is a
pure function of (seed, i), it sees the batches it would have seen without the stop.

`--strategy=mirrored` trains data-parallel over the visible devices (on a CPU-only
machine, `--replicas=N` first splits the CPU into N logical devices): each replica
draws its own part of the global batch, gradients are all-reduced, and every replica
applies the same update.
"""

import os
import time
from typing import Any

import gin
import tensorflow as tf
from absl import app, flags, logging

import core
from models.dnc import babi, dnc, repeat_copy

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_config", [], "gin config files, applied in order")
flags.DEFINE_multi_string("gin_bindings", [], "gin bindings, applied after the files (e.g. 'train.num_steps=10')")
flags.DEFINE_string("workdir", None, "directory for checkpoints, summaries and the config; a run resumes from it")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored"], "default: one device; mirrored: data parallel")
flags.DEFINE_integer(
    "replicas", 0, "with --strategy=mirrored on a CPU-only machine: split the CPU into this many devices"
)
flags.DEFINE_integer("seed", 0, "makes the run reproducible: initial weights, batches, everything")

# What the gin files configure. Model files never import gin; this file registers them.
gin.external_configurable(dnc.DNC, module="dnc")
gin.external_configurable(repeat_copy.RepeatCopy, module="repeat_copy")
gin.external_configurable(repeat_copy.RepeatCopyTask, module="repeat_copy")
gin.external_configurable(babi.BabiTask, module="babi")
gin.external_configurable(core.optimizers.RMSProp, module="optimizers")
gin.external_configurable(core.optimizers.Adam, module="optimizers")
gin.external_configurable(core.initializers.RandomNormal, module="initializers")


@gin.configurable
def train(
    workdir: str,
    task: Any = gin.REQUIRED,
    model: Any = gin.REQUIRED,
    optimizer: Any = gin.REQUIRED,
    num_steps: int = 100_000,
    clip_global_norm: float | None = 50.0,
    recompute_chunk: int | None = None,
    log_every: int = 100,
    eval_every: int = 5_000,
    checkpoint_every: int = 1_000,
    stop_when_solved: bool = False,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Runs (or resumes) training; returns the last logged and evaluated figures.

    Args:
      workdir: where checkpoints, summaries and the config go.
      task: `repeat_copy.RepeatCopyTask` or `babi.BabiTask` (batches, loss, metrics,
        held-out sets).
      model: a callable (input_size, output_size) -> DNC; gin's `@dnc.DNC` with its
        sizes bound, the task's sizes filled in here.
      optimizer: a `core.optimizers` instance (DeepMind's setup: RMSProp).
      num_steps: train until this many steps in total (a resumed run counts the
        steps already done).
      clip_global_norm: clip gradients to this global norm (DeepMind's 50); None: no clip.
      recompute_chunk: unroll with `core.checkpointed_unroll` in chunks of this many
        steps, recomputing activations in the backward pass (large memories); None:
        `core.dynamic_unroll`, which stores them.
      log_every: steps between progress lines and train summaries.
      eval_every: steps between evaluations on the held-out sets (also at the end).
      checkpoint_every: steps between checkpoints (also at the end).
      stop_when_solved: stop at the first evaluation the task calls solved.
      seed: the run's seed (`--seed` sets it).
      strategy: a `tf.distribute` strategy; None for the default one.
      quiet: no progress lines (tests).

    Returns:
      {"step", "train": last logged train figures (means since the previous log),
      "history": every logged line, "eval": last evaluation, "solved_at": the step it
      was first solved at, or None, "steps_per_second", and the trained "model" and
      "optimizer" objects}.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if task.batch_size % replicas:
        raise ValueError(f"the batch size {task.batch_size} does not split over {replicas} replicas")
    core.utils.set_seed(seed)
    with strategy.scope():
        net = model(output_size=task.output_size)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

    def unroll(observations):
        state = net.initial_state(tf.shape(observations)[1])
        if recompute_chunk:
            return core.checkpointed_unroll(net, observations, state, recompute_chunk)[0]
        return core.dynamic_unroll(net, observations, state)[0]

    def replica_batch(ctx):
        return task.train_batch(seed, int(step.numpy()), ctx.replica_id_in_sync_group, replicas)

    # Build the variables with one eager call: TensorFlow cannot create variables in the
    # first trace of a function that also all-reduces.
    first = strategy.experimental_distribute_values_from_function(replica_batch)
    strategy.run(lambda b: unroll(b.observations), args=(first,))
    params = net.trainable_variables
    with strategy.scope():
        optimizer.build(params)

    checkpoint = tf.train.Checkpoint(model=net, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        _say(quiet, f"resumed from {manager.latest_checkpoint} at step {int(step.numpy())}")

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        def replica_step(batch):
            with tf.GradientTape() as tape:
                logits = unroll(batch.observations)
                loss = task.loss(logits, batch)
            grads = core.distribute.all_reduce_gradients(tape.gradient(loss, params))
            if clip_global_norm:
                grads, _ = tf.clip_by_global_norm(grads, clip_global_norm)
            optimizer.apply(grads, params)
            step.assign_add(1)
            return task.metrics(logits, batch)

        per_replica_metrics = strategy.run(replica_step, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica_metrics, axis=None)

    eval_logits = tf.function(unroll, reduce_retracing=True)

    train_writer = tf.summary.create_file_writer(os.path.join(workdir, "train"))
    eval_writer = tf.summary.create_file_writer(os.path.join(workdir, "eval"))
    with open(os.path.join(workdir, "config.gin"), "w") as f:
        f.write(gin.config_str())

    result: dict[str, Any] = {"train": {}, "eval": {}, "solved_at": None, "steps_per_second": None, "history": []}
    sums, count, clock, clock_step = {}, 0, time.perf_counter(), int(step.numpy())
    while int(step.numpy()) < num_steps:
        batch = strategy.experimental_distribute_values_from_function(replica_batch)
        for key, value in train_step(batch).items():
            sums[key] = sums.get(key, 0.0) + float(value)
        count += 1
        current = int(step.numpy())
        if current % log_every == 0 or current == num_steps:
            now = time.perf_counter()
            rate = (current - clock_step) / (now - clock)
            figures = {key: value / count for key, value in sums.items()}
            result["train"], result["steps_per_second"] = figures, rate
            result["history"].append({"step": current, **figures})
            with train_writer.as_default(step=current):
                for key, value in figures.items():
                    tf.summary.scalar(key, value)
                tf.summary.scalar("steps_per_second", rate)
            _say(quiet, _progress(current, num_steps, figures, rate))
            sums, count, clock, clock_step = {}, 0, now, current
        if current % eval_every == 0 or current == num_steps:
            result["eval"] = task.evaluate(eval_logits, seed)
            with eval_writer.as_default(step=current):
                for name, figures in result["eval"].items():
                    for key, value in figures.items():
                        tf.summary.scalar(f"{name}/{key}", value)
            _say(
                quiet,
                "eval "
                + "; ".join(
                    f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
                    for name, figures in result["eval"].items()
                ),
            )
            if result["solved_at"] is None and task.is_solved(result["eval"]):
                result["solved_at"] = current
                _say(quiet, f"solved at step {current}")
                if stop_when_solved:
                    manager.save(checkpoint_number=current)
                    break
        if current % checkpoint_every == 0 or current == num_steps:
            manager.save(checkpoint_number=current)
    train_writer.flush()
    eval_writer.flush()
    result["step"] = int(step.numpy())
    result["model"], result["optimizer"] = net, optimizer
    return result


def restore(workdir: str, checkpoint: str | None = None) -> tuple[Any, Any, int]:
    """The task and trained model of a run, from its workdir's config and checkpoint.

    Returns:
      (task, model, step): the model with the weights of `checkpoint` (default: the
      latest in the workdir) and the step it was saved at.

    Raises:
      FileNotFoundError: if the workdir holds no config or no checkpoint.
    """
    config = os.path.join(workdir, "config.gin")
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    if not os.path.exists(config) or path is None:
        raise FileNotFoundError(f"{workdir} holds no config.gin or no checkpoint; train a model there first")
    gin.parse_config_file(config)
    task = gin.query_parameter("train.task").scoped_configurable_fn()
    net = gin.query_parameter("train.model").scoped_configurable_fn(output_size=task.output_size)
    step = tf.Variable(0, dtype=tf.int64)
    batch = task.train_batch(0, 0)
    core.dynamic_unroll(net, batch.observations[:, :1], net.initial_state(1))  # build the variables
    tf.train.Checkpoint(model=net, step=step).restore(path).expect_partial().assert_existing_objects_matched()
    return task, net, int(step.numpy())


def _progress(current: int, total: int, figures: dict[str, float], rate: float) -> str:
    done = current / total
    bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
    eta = (total - current) / rate if rate > 0 else float("nan")
    shown = " ".join(f"{k} {v:.4f}" for k, v in figures.items())
    return f"[{bar}] {current}/{total} {shown} | {rate:.1f} steps/s, eta {eta / 60:.1f} min"


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        logging.info(message)
        print(message, flush=True)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.workdir is None:
        raise app.UsageError("--workdir is required")
    strategy = None
    if FLAGS.strategy == "mirrored":
        devices = core.distribute.logical_cpus(FLAGS.replicas) if FLAGS.replicas else None
        strategy = tf.distribute.MirroredStrategy(devices)
    gin.parse_config_files_and_bindings(FLAGS.gin_config, FLAGS.gin_bindings)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    train(workdir=FLAGS.workdir, seed=FLAGS.seed, strategy=strategy)


if __name__ == "__main__":
    app.run(main)
