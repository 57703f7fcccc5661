"""Trains the AlphaStar-style network, by behaviour cloning or by actor-critic RL, configured by gin.

    python -m models.alphastar_net.train --workdir=/tmp/alphastar \\
        --gin_config=models/alphastar_net/configs/bc_mini.gin \\
        [--gin_bindings='train.num_steps=1000'] [--seed=3] [--strategy=mirrored --replicas=2]
    python -m models.alphastar_net.train --workdir=/tmp/alphastar_rl \\
        --gin_config=models/alphastar_net/configs/rl_mini.gin --init_checkpoint=/tmp/alphastar

The task decides the mode. Behaviour cloning (`imitation.ImitationTask`) teacher-forces
the network with the expert's actions over whole episodes; the loss is the negative
log-likelihood of the arguments each action type uses (the argument table masks the
others), and every head's accuracy is logged. Evaluation adds held-out accuracies and
the score of games the network plays beside the expert's and a random agent's.

Reinforcement learning (`reinforcement.ReinforcementTask`): each step, actors play a
batch of games with the current weights (the network's sampling mode in a
`tf.function`, the game in NumPy), recording the behaviour log-probabilities; the
learner teacher-forces the network over those trajectories and learns with V-trace
policy gradients, UPGO, TD(lambda) value targets, an entropy bonus and a KL penalty
towards a frozen reference policy. `train.init_checkpoint` (or `--init_checkpoint`)
names the behaviour-cloned network to start from, which is also the reference; without
it the run starts from randomly initialised weights and the reference is that initial
network. The games of step s are a pure function of (seed, s) and the weights, so resume
is exact in this mode too. Evaluation (also at step 0: the starting agent's score)
plays games as in behaviour cloning.

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
from models.alphastar_net import environment, imitation, network, reinforcement

# What the gin files configure. Model files never import gin; this file registers them.
gin.external_configurable(network.AlphaStarNet, module="network")
gin.external_configurable(network.Config, module="network")
for _name, _config in network.CONFIGS.items():
    gin.external_configurable(_config, name=_name, module="network")
gin.external_configurable(environment.GameSettings, module="environment")
gin.external_configurable(environment.full_settings, module="environment")
gin.external_configurable(imitation.ImitationTask, module="imitation")
gin.external_configurable(reinforcement.ReinforcementTask, module="reinforcement")
gin.external_configurable(core.optimizers.Adam, module="optimizers")
gin.external_configurable(core.optimizers.RMSProp, module="optimizers")
gin.external_configurable(core.optimizers.SGD, module="optimizers")


# --- the settings ------------------------------------------------------------------------


@gin.configurable("train")
@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run is configured by; gin files set them as `train.<name> = value`.

    Attributes:
      task: the data (or games), the loss, the metrics and the evaluation:
        `imitation.ImitationTask` (behaviour cloning) or `reinforcement.ReinforcementTask`.
      model: (interface) -> AlphaStarNet; gin's `@network.AlphaStarNet` with its config bound.
      optimizer: a `core.optimizers` instance (AlphaStar's supervised setup: Adam, 1e-3;
        its RL setup: Adam, 3e-5, betas (0, 0.99), epsilon 1e-5).
      init_checkpoint: reinforcement learning only: the behaviour-cloned network to
        start from and to keep close to (a checkpoint, or the workdir of a behaviour
        cloning run: its newest checkpoint); None starts from random weights.
      seed: the run's seed: initial weights, batches, everything (`--seed` sets it).
      num_steps: train until this many steps in all (a resumed run counts those done).
      jit_compile: compile each replica's forward and backward pass with XLA.
      clip_global_norm: clip gradients to this global norm; None: no clip.
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
    model: Callable[..., network.AlphaStarNet] = gin.REQUIRED
    optimizer: Any = gin.REQUIRED
    seed: int = 0
    num_steps: int = 100_000
    jit_compile: bool = True
    clip_global_norm: float | None = 10.0
    on_nonfinite: str = "stop"
    log_every: int = 100
    eval_every: int = 5_000
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 3
    stop_when_solved: bool = False
    init_checkpoint: str | None = None

    def __post_init__(self):
        for name in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
            _check(name, _is_int(getattr(self, name)) and getattr(self, name) >= 1, "a positive integer")
        _check("seed", _is_int(self.seed) and 0 <= self.seed < 2**31, "an integer in [0, 2**31)")
        _check("jit_compile", isinstance(self.jit_compile, bool), "True or False")
        _check("stop_when_solved", isinstance(self.stop_when_solved, bool), "True or False")
        _check("on_nonfinite", self.on_nonfinite in ("stop", "skip"), '"stop" or "skip"')
        clip = self.clip_global_norm
        _check("clip_global_norm", clip is None or (_is_number(clip) and clip > 0), "a positive number or None")
        _check("optimizer", callable(getattr(self.optimizer, "apply", None)), "an optimizer such as @optimizers.Adam()")
        _check("model", callable(self.model), "a callable that makes the model, such as @network.AlphaStarNet")
        methods = ("dataset", "loss", "metrics", "evaluate", "is_solved")
        if self.reinforcement:
            methods = ("collect", "loss_and_metrics", "evaluate", "is_solved")
        for method in methods:
            _check("task", callable(getattr(self.task, method, None)), f"a task (it has no {method} method)")
        if self.init_checkpoint is not None:
            _check(
                "init_checkpoint",
                self.reinforcement,
                "None in behaviour cloning (it names the cloned network reinforcement learning starts from)",
            )
            _check(
                "init_checkpoint",
                isinstance(self.init_checkpoint, str) and bool(self.init_checkpoint),
                "a checkpoint path, a workdir, or None",
            )

    @property
    def reinforcement(self) -> bool:
        """Whether the task is reinforcement learning (else behaviour cloning)."""
        return isinstance(self.task, reinforcement.ReinforcementTask)


def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"train.{name} must be {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass
class Result:
    """What a run did, in numbers: the last step, every logged line, the last evaluation
    (and in reinforcement learning, the evaluation at step 0, before any update)."""

    step: int
    history: list[dict[str, float]]
    eval: dict[str, dict[str, float]]
    solved_at: int | None
    skipped_steps: int
    steps_per_second: float | None
    start_eval: dict[str, dict[str, float]] | None = None


class NonFiniteError(RuntimeError):
    """A step's loss, gradients or updated weights were not finite (nothing of it was saved)."""


# --- the run -------------------------------------------------------------------------------


def train(
    settings: Settings,
    workdir: str,
    strategy: tf.distribute.Strategy | None = None,
    model: network.AlphaStarNet | None = None,
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
      ValueError: the global batch does not split evenly over the replicas, or
        `settings.init_checkpoint` holds no checkpoint that fits the model.
    """
    strategy = strategy or tf.distribute.get_strategy()
    task, replicas = settings.task, strategy.num_replicas_in_sync
    if task.batch_size % replicas:
        raise ValueError(f"the batch size {task.batch_size} does not split evenly over {replicas} replicas")
    init_checkpoint = settings.init_checkpoint and find_checkpoint(settings.init_checkpoint)
    core.utils.set_seed(settings.seed)
    chief = core.distribute.is_chief(strategy)
    outdir = core.distribute.worker_dir(strategy, workdir)
    os.makedirs(outdir, exist_ok=True)

    # The model (and in RL the frozen reference policy) and the optimizer, their
    # variables built once, by one eager call.
    with strategy.scope():
        model = model or settings.model(interface=task.interface)
        build(model, task, settings.seed)
        reference = None
        if settings.reinforcement:
            reference = settings.model(interface=task.interface)
            build(reference, task, settings.seed)
        optimizer = settings.optimizer
        optimizer.build(model.trainable_variables)
        step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        skipped_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")

    # The checkpoint: resumes from the newest readable one by itself.
    saved = dict(model=model, optimizer=optimizer, step=step_counter, skipped=skipped_counter)
    checkpoint = tf.train.Checkpoint(**saved, **({"reference": reference} if reference is not None else {}))
    manager = checkpoint_manager(checkpoint, os.path.join(outdir, "checkpoints"), settings.keep_checkpoints)
    resumed_from = restore_newest(checkpoint, os.path.join(workdir, "checkpoints"))
    step, skipped = int(step_counter.numpy()), int(skipped_counter.numpy())
    if resumed_from:
        logging.info("resumed from %s at step %d", resumed_from, step)
    elif reference is not None:
        start_reinforcement(model, reference, init_checkpoint)
    if chief:
        record_config(workdir, step)

    # Evaluation is rare and its shapes vary (a last partial batch, one step at a time
    # in play): not worth an XLA compile per shape.
    predict = imitation.Agent(model)

    # The data: this process's per-replica batches, from the step the run is at; in
    # RL, the games the actors play with the current weights (evaluation's sampling
    # step), step by step.
    if settings.reinforcement:
        actor = reinforcement.Actor(predict)

        def next_batch(step):
            return distribute_batch(strategy, task.collect(actor, settings.seed, step))
    else:
        batches = iter(strategy.distribute_datasets_from_function(lambda ctx: task.dataset(settings.seed, step, ctx)))

        def next_batch(step):
            return batches

    train_step = make_train_step(model, optimizer, settings, strategy, step_counter, skipped_counter, reference)

    # The loop.
    writers = {name: summary_writer(chief, outdir, name) for name in ("train", "eval")}
    result = Result(step, [], {}, None, skipped, None)
    if settings.reinforcement and step == 0:  # the starting agent, to compare with
        result.start_eval = task.evaluate(predict, settings.seed)
        for name, figures in result.start_eval.items():
            write_scalars(writers["eval"], 0, {f"{name}/{k}": v for k, v in figures.items()})
        logging.info("eval at step 0 %s", "; ".join(f"{n}: " + _figures(f) for n, f in result.start_eval.items()))
    sums, count, clock, clock_step = {}, 0, time.perf_counter(), step
    while step < settings.num_steps:
        metrics, finite = train_step(next_batch(step))
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


def build(model: network.AlphaStarNet, task: Any, seed: int) -> None:
    """Creates the model's variables by one eager call on a one-episode batch of the task's shape."""
    if isinstance(task, reinforcement.ReinforcementTask):
        observation = network.zero_observation(task.interface, [1, 1])
        model.unroll(observation, model.initial_state(1), seed=tf.constant([0, 0]))
    else:
        example = next(iter(task.dataset(seed, 0, tf.distribute.InputContext())))
        unroll(model, tf.nest.map_structure(lambda x: x[:1], example))


def find_checkpoint(path: str) -> str:
    """The checkpoint `path` names: itself, or the newest in path/checkpoints or in path.

    Raises:
      ValueError: naming `train.init_checkpoint`, if there is none.
    """
    if tf.io.gfile.exists(path + ".index"):
        return path
    for directory in (os.path.join(path, "checkpoints"), path):
        paths = glob.glob(os.path.join(directory, "ckpt-*.index"))
        numbered = [(int(m.group(1)), p[: -len(".index")]) for p in paths if (m := re.search(r"ckpt-(\d+)\.index$", p))]
        if numbered:
            return max(numbered)[1]
    raise ValueError(
        f"train.init_checkpoint = {path!r} is not a checkpoint, nor a workdir or folder holding one "
        "(train a behaviour-cloning run first, or leave it None to start from scratch)"
    )


def start_reinforcement(model: network.AlphaStarNet, reference: network.AlphaStarNet, init: str | None) -> None:
    """The weights an RL run starts from: the cloned network of `init` for both the model and the frozen
    reference; with `init` None, the model's random initial weights for both.

    Raises:
      ValueError: naming `train.init_checkpoint`, if its network does not fit the model.
    """
    if init:
        try:
            tf.train.Checkpoint(model=reference).read(init).expect_partial().assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"train.init_checkpoint: {init} does not hold a network of this configuration ({reason})"
            ) from e
        source, target = reference, model
        logging.info("reinforcement learning from the cloned network %s (also the KL reference)", init)
    else:
        source, target = model, reference
        logging.info(
            "reinforcement learning from scratch (train.init_checkpoint is None): random initial weights, "
            "and the KL penalty pulls towards that initial network"
        )
    for a, b in zip(target.variables, source.variables, strict=True):
        a.assign(b)


def distribute_batch(strategy: tf.distribute.Strategy, batch: dict) -> Any:
    """A NumPy global batch [T, B, ...] as per-replica tensors: replica r of R gets examples [r B/R, (r + 1) B/R)."""
    replicas = strategy.num_replicas_in_sync

    def part(context):
        size = next(iter(tf.nest.flatten(batch))).shape[1] // replicas
        first = context.replica_id_in_sync_group * size
        return tf.nest.map_structure(lambda x: tf.convert_to_tensor(x[:, first : first + size]), batch)

    return strategy.experimental_distribute_values_from_function(part)


def unroll(model: network.AlphaStarNet, batch: dict) -> network.AgentOutput:
    """The model teacher-forced with a batch's actions over its time-major observations, from its initial state."""
    observations = batch["observation"]
    state = model.initial_state(tf.shape(observations["available_action_types"])[1])
    return model.unroll(observations, state, batch["action"])[0]


def make_train_step(
    model: network.AlphaStarNet,
    optimizer: Any,
    settings: Settings,
    strategy: tf.distribute.Strategy,
    step_counter: tf.Variable,
    skipped_counter: tf.Variable,
    reference: network.AlphaStarNet | None = None,
) -> Callable[[Any], tuple[dict[str, float], bool]]:
    """One training step over the next distributed batch: (mean metrics, whether it was finite).

    The step takes an iterator of distributed batches (behaviour cloning) or, when
    `reference` is given (reinforcement learning), the distributed batch itself.

    Each replica's forward and backward pass is one `tf.function`, compiled by XLA when
    `settings.jit_compile`; the all-reduce, the clipping, the finiteness check and the
    update run around it, outside XLA (XLA compiles for one device, so it cannot hold
    the cross-replica all-reduce on a CPU; on one device it costs nothing to split).
    """
    task, params = settings.task, list(model.trainable_variables)
    skip = settings.on_nonfinite == "skip"

    def loss_and_grads(batch):
        with tf.GradientTape() as tape:
            if reference is not None:
                loss, metrics = task.loss_and_metrics(model, reference, batch)
            else:
                outputs = unroll(model, batch)
                loss = task.loss(outputs, batch)
        if reference is None:
            metrics = task.metrics(outputs, batch)
        return tape.gradient(loss, params), metrics

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
    def step(source):
        # Every replica holds the same means and verdict; this process reads its first's.
        batch = source if reference is not None else next(source)
        metrics, finite = strategy.run(replica_step, args=(batch,))
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


def restore(workdir: str, checkpoint: str | None = None) -> tuple[Any, network.AlphaStarNet, int]:
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
    model = settings.model(interface=settings.task.interface)
    build(model, settings.task, settings.seed)
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
    flags.DEFINE_string(
        "init_checkpoint",
        None,
        "RL: the cloned network (checkpoint or workdir) to start from; sets train.init_checkpoint",
    )
    flags.DEFINE_enum("strategy", "default", list(core.distribute.STRATEGIES), "how to spread the work over devices")
    flags.DEFINE_integer("replicas", 0, "--strategy=mirrored without GPUs: split the CPU into this many", lower_bound=0)
    flags.DEFINE_string("tpu", None, "--strategy=tpu: the TPU's name or grpc:// address")


def parse_config(files: list[str], bindings: list[str], seed: int | None, init_checkpoint: str | None = None) -> None:
    """Applies gin files, then bindings, then `--seed` and `--init_checkpoint`; every error names the file or binding.

    `--seed` is one more binding, `train.seed`; a config that binds another seed is an
    error rather than silently overridden. `--init_checkpoint` binds
    `train.init_checkpoint` the same way.
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
    if init_checkpoint is not None:
        try:
            bound = gin.query_parameter("train.init_checkpoint")
        except ValueError:
            bound = None
        if bound is not None and bound != init_checkpoint:
            raise ValueError(
                f"--init_checkpoint={init_checkpoint} disagrees with train.init_checkpoint = {bound!r} in the config; "
                "give one of them"
            )
        gin.bind_parameter("train.init_checkpoint", init_checkpoint)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.workdir is None:
        raise app.UsageError("--workdir is required")
    strategy = core.distribute.make_strategy(FLAGS.strategy, replicas=FLAGS.replicas, tpu=FLAGS.tpu)
    parse_config(FLAGS.gin_config, FLAGS.gin_bindings, FLAGS.seed, FLAGS.init_checkpoint)
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
