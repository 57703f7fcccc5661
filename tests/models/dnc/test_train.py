"""The DNC training setup: it learns, resumes exactly, survives faults, runs on replicas and workers."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from models.dnc import train
from tests.models.checks import copy_checkpoints, max_difference

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir)
SMOKE = os.path.join(ROOT, "models", "dnc", "configs", "smoke.gin")
ENV = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT), TF_CPP_MIN_LOG_LEVEL="2")

# Tests that only compare weights skip the generalisation sets (each is another trace).
NO_GENERALIZATION = "repeat_copy.RepeatCopyTask.generalization = ()"


def settings(*bindings: str) -> train.Settings:
    """The smoke settings with `bindings` applied, as `train.py` would build them.

    The gin config stays in force afterwards, as in a program: `settings.model` makes
    the model from it, and the run records it.
    """
    gin.clear_config()
    train.parse_config([SMOKE], list(bindings), seed=None)
    return train.Settings()


def run(workdir, *bindings, strategy=None) -> train.Result:
    return train.train(settings(*bindings), str(workdir), strategy)


def weights(workdir) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith(("model/", "optimizer/", "step/")))
    return {n: reader.get_tensor(n) for n in names}


def command(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.dnc.train", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=timeout,
    )


def test_loss_halves_in_a_thousand_steps_and_resumes_bit_exact_under_xla(tmp_path):
    # smoke.gin (the repeat-copy defaults with learning rate 1e-3, 10x DeepMind's) under XLA.
    # One test for both, so that the 1,000 steps are paid once. (A resume without XLA,
    # across processes: the SIGKILL test below.)
    xla = ["train.jit_compile=True", "train.log_every=100", "train.checkpoint_every=500"]
    result = run(tmp_path / "straight", "train.num_steps=1000", "train.eval_every=1000", *xla)
    first, last = result.history[0], result.history[-1]
    assert first["step"] == 100 and last["step"] == 1000 and result.step == 1000
    assert first["loss"] > 9.0  # near the 11.26 nats of knowing nothing
    assert last["loss"] <= 0.5 * first["loss"]
    assert last["bit_errors"] < first["bit_errors"]
    assert result.eval["held_out"]["loss"] < first["loss"]
    assert result.skipped_steps == 0

    # Stopped after the checkpoint at step 500 and resumed: the same weights and
    # optimizer state, bit for bit.
    copy_checkpoints(tmp_path / "straight", tmp_path / "resumed", [500])
    resumed = run(tmp_path / "resumed", "train.num_steps=1000", NO_GENERALIZATION, *xla)
    assert resumed.step == 1000 and [h["step"] for h in resumed.history] == [600, 700, 800, 900, 1000]
    a, b = weights(tmp_path / "resumed"), weights(tmp_path / "straight")
    assert any(n.startswith("optimizer/") for n in a)  # the slots are saved too
    assert max_difference(a, b) == 0.0
    assert resumed.history[-1] == last


def test_a_truncated_or_unlisted_latest_checkpoint_falls_back_to_the_one_before(tmp_path):
    straight = run(tmp_path / "straight", "train.num_steps=20", NO_GENERALIZATION)
    # The straight run's checkpoints at steps 10 and 20, as a run killed while writing
    # step 20's leaves them: its data cut short, the list of checkpoints empty.
    copy_checkpoints(tmp_path / "straight", tmp_path / "a", [10, 20])
    checkpoints = tmp_path / "a" / "checkpoints"
    (data,) = checkpoints.glob("ckpt-20.data-*")
    data.write_bytes(data.read_bytes()[:100])
    (checkpoints / "checkpoint").write_text("")
    resumed = run(tmp_path / "a", "train.num_steps=20", NO_GENERALIZATION)
    assert resumed.history[0]["step"] == 20  # it went back to step 10 and redid 11..20
    assert max_difference(weights(tmp_path / "a"), weights(tmp_path / "straight")) == 0.0
    assert resumed.history[-1] == straight.history[-1]
    # Nothing readable at all: an error naming each checkpoint, not a fresh start.
    for data in checkpoints.glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"no checkpoint in .*checkpoints can be read:\n  .*ckpt-20"):
        run(tmp_path / "a", "train.num_steps=30", NO_GENERALIZATION)


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_a_non_finite_step_never_reaches_the_weights(tmp_path, mode):
    # A learning rate of 1e38: the first update overflows the weights to infinity.
    bindings = ["optimizers.RMSProp.learning_rate=1e38", "train.checkpoint_every=1", "train.num_steps=4"]
    bindings += [f"train.on_nonfinite='{mode}'", "train.log_every=1", NO_GENERALIZATION]
    if mode == "stop":
        # A good checkpoint first, then the overflow: the run stops, that checkpoint intact.
        run(tmp_path, "train.num_steps=2", "train.checkpoint_every=2", NO_GENERALIZATION)
        good = weights(tmp_path)
        with pytest.raises(
            train.NonFiniteError, match=r"step 3: the loss, a gradient or the updated .*ckpt-2 is the last good state"
        ):
            run(tmp_path, *bindings)
        assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
        assert max_difference(weights(tmp_path), good) == 0.0
    else:
        result = run(tmp_path, *bindings)
        assert result.step == 4 and result.skipped_steps == 4
        assert [line["skipped_steps"] for line in result.history] == [1, 2, 3, 4]
        assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
        # Every step undone: the optimizer's slots are still at their initial zeros.
        slots = [v for n, v in weights(tmp_path).items() if n.startswith("optimizer/")]
        assert len(slots) == 14 and all(not np.any(v) for v in slots)
    for name, value in weights(tmp_path).items():
        assert np.all(np.isfinite(value)), name


@pytest.mark.slow
def test_replicas_train_as_one_device_on_the_whole_batch(tmp_path, mirrored):
    # Opt-in for its cost: the two-worker test below runs train.py over several replicas
    # against one process in every run, and the conformance suite the DNC's modules under
    # the mirrored strategy. Four replicas, each on its quarter of every batch, against one device on the whole.
    steps = ["train.num_steps=3", "train.log_every=1", "train.eval_every=3", NO_GENERALIZATION]
    replicated = run(tmp_path / "mirrored", *steps, strategy=mirrored)
    single = run(tmp_path / "single", *steps)
    assert replicated.step == 3 and np.isfinite(replicated.history[-1]["loss"])
    for a, b in zip(replicated.history, single.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert max_difference(weights(tmp_path / "mirrored"), weights(tmp_path / "single")) < 1e-5


def test_settings_are_checked_before_anything_runs():
    for binding, message in [
        ("train.num_steps=5.5", "train.num_steps must be a positive integer"),
        ("train.num_steps='five'", "train.num_steps must be a positive integer"),
        ("train.checkpoint_every=0", "train.checkpoint_every must be a positive integer"),
        ("train.clip_global_norm=-1.0", "train.clip_global_norm must be a positive number or None"),
        ("train.on_nonfinite='ignore'", 'train.on_nonfinite must be "stop" or "skip"'),
        ("train.seed=-3", r"train.seed must be an integer in \[0, 2\*\*31\)"),
        ("train.jit_compile=1", "train.jit_compile must be True or False"),
    ]:
        with pytest.raises(ValueError, match=message):
            settings(binding)


def test_config_errors_name_the_file_or_binding(tmp_path):
    broken = tmp_path / "broken.gin"
    broken.write_text("train.num_steps = (1\n")
    for files, bindings, message in [
        ([str(broken)], [], r"gin config .*broken.gin: "),
        ([str(tmp_path / "missing.gin")], [], r"gin config .*missing.gin does not exist"),
        ([SMOKE], ["train.num_step=3"], r"gin binding 'train.num_step=3': .*doesn't have a parameter named 'num_step'"),
    ]:
        gin.clear_config()
        with pytest.raises(ValueError, match=message):
            train.parse_config(files, bindings, seed=None)
    gin.clear_config()
    with pytest.raises(ValueError, match=r"--seed=3 disagrees with train.seed = 8"):
        train.parse_config([SMOKE], ["train.seed=8"], seed=3)
    gin.clear_config()
    train.parse_config([SMOKE], ["train.seed=8"], seed=None)  # one source: the binding
    assert train.Settings().seed == 8
    gin.clear_config()


def test_the_recorded_config_is_the_operative_one_and_a_changed_resume_keeps_both(tmp_path, caplog):
    run(tmp_path, "train.num_steps=2", "train.seed=5", NO_GENERALIZATION)
    recorded = (tmp_path / "config.gin").read_text()
    assert "train.seed = 5" in recorded and "train.num_steps = 2" in recorded
    assert "DNC.clip_value = 20" in recorded
    run(tmp_path, "train.num_steps=2", "train.seed=5", NO_GENERALIZATION)
    assert sorted(p.name for p in tmp_path.glob("config*.gin")) == ["config.gin"]  # the same: nothing new
    run(tmp_path, "train.num_steps=4", "train.seed=5", NO_GENERALIZATION)
    assert (tmp_path / "config.before-step-2.gin").read_text() == recorded
    assert "train.num_steps = 4" in (tmp_path / "config.gin").read_text()
    assert any(
        "-train.num_steps = 2" in r.getMessage() and "+train.num_steps = 4" in r.getMessage() for r in caplog.records
    )


def test_a_run_killed_mid_flight_resumes_to_the_same_weights(tmp_path):
    # SIGKILL lands wherever it lands (between steps, or in a checkpoint write); the
    # restarted run must end where an uninterrupted one does, bit for bit. Both go
    # through the command line, whose outputs are checked on the uninterrupted run.
    args = [f"--gin_config={SMOKE}", "--gin_bindings=train.num_steps=60", "--gin_bindings=train.checkpoint_every=7"]
    args += [f"--gin_bindings={NO_GENERALIZATION}", "--gin_bindings=train.eval_every=60", "--seed=3"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.dnc.train", f"--workdir={killed}", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and not list((killed / "checkpoints").glob("ckpt-21.index")):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = command(f"--workdir={killed}", *args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight_dir = tmp_path / "straight"
    straight = command(f"--workdir={straight_dir}", *args)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert max_difference(weights(killed), weights(straight_dir)) == 0.0
    assert "60/60" in straight.stderr and "eval held_out" in straight.stderr
    assert "train.seed = 3" in (straight_dir / "config.gin").read_text()
    assert os.listdir(straight_dir / "train") and os.listdir(straight_dir / "eval")
    assert tf.train.latest_checkpoint(str(straight_dir / "checkpoints")).endswith("ckpt-60")


def test_a_non_finite_run_exits_non_zero_and_says_why(tmp_path):
    nan = command(
        f"--workdir={tmp_path}",
        f"--gin_config={SMOKE}",
        "--gin_bindings=optimizers.RMSProp.learning_rate=1e38",
        f"--gin_bindings={NO_GENERALIZATION}",
    )
    assert nan.returncode == 1, nan.stderr[-2000:]
    assert "the loss, a gradient or the updated weights are not finite" in nan.stderr
    assert "no checkpoint yet" in nan.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--workdir is required"),
        (["--workdir=/proc/forbidden", f"--gin_config={SMOKE}"], "--workdir=/proc/forbidden cannot be written"),
        (["--workdir=/tmp/x", "--replicas=-1"], "flag --replicas=-1: -1 is not a non-negative integer"),
        (["--workdir=/tmp/x", "--replicas=2"], "replicas=2 splits the CPU for the mirrored strategy only"),
        (["--workdir=/tmp/x", "--strategy=multi_worker"], "TF_CONFIG names no cluster"),
    ],
)
def test_command_line_errors(args, message):
    env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
    out = subprocess.run(
        [sys.executable, "-m", "models.dnc.train", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode != 0
    assert re.search(message, out.stderr), out.stderr[-1500:]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_as_one_process_on_the_whole_batch(tmp_path):
    """Two processes on localhost, TF_CONFIG, MultiWorkerMirroredStrategy: the chief's
    checkpoint and the other worker's weights are the same, and equal (float32 rounding)
    to one process training on the whole batch with the same seed."""
    steps = ["train.num_steps=3", "train.checkpoint_every=3", "train.eval_every=3", NO_GENERALIZATION]
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(
            ENV, TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        )
        args = [f"--workdir={tmp_path / 'cluster'}", "--strategy=multi_worker", f"--gin_config={SMOKE}", "--seed=4"]
        args += [f"--gin_bindings={b}" for b in steps]
        script = "import sys; from tests.models.dnc import worker; worker.main(sys.argv[1:])"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path / f"weights_{index}.npz"), *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    first, second = (dict(np.load(tmp_path / f"weights_{i}.npz")) for i in range(2))
    assert len(first) == 7 and max_difference(first, second) == 0.0
    assert not (tmp_path / "cluster" / "workers").exists()  # the other worker's copy is gone
    assert tf.train.latest_checkpoint(str(tmp_path / "cluster" / "checkpoints")).endswith("ckpt-3")
    one = settings("train.seed=4", *steps)
    model = one.model(output_size=one.task.output_size)
    train.train(one, str(tmp_path / "single"), model=model)
    assert max_difference(first, {v.name: v.numpy() for v in model.variables}) < 1e-5


@pytest.mark.slow
def test_repeat_copy_is_solved(tmp_path):
    """The reproduction, opt-in: learning rate 1e-3 solves repeat copy (held-out loss
    under 0.1 nats, no wrong bit on 1,000 sequences) in a few thousand steps here."""
    result = run(
        tmp_path,
        "train.num_steps=20000",
        "train.log_every=500",
        "train.eval_every=500",
        "train.checkpoint_every=5000",
        "train.stop_when_solved=True",
        "repeat_copy.RepeatCopyTask.eval_sequences=1000",
        "repeat_copy.RepeatCopyTask.eval_batch_size=100",
        NO_GENERALIZATION,
    )
    assert result.solved_at is not None, result.eval
    assert result.eval["held_out"]["loss"] < 0.1 and result.eval["held_out"]["bit_errors"] == 0.0
