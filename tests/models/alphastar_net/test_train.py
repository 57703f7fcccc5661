"""The AlphaStar network's training setup: it learns, resumes exactly, survives faults, runs on replicas and workers.

The checks of `tests/models/dnc/test_train.py`, on behaviour cloning of the game's
expert. A traced step of the whole network costs seconds, so `make test` runs one test
of four short runs and the checks that need no run; the rest are `slow`.
"""

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

from models.alphastar_net import train
from tests.models.checks import copy_checkpoints, max_difference

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir)
SMOKE = os.path.join(ROOT, "models", "alphastar_net", "configs", "smoke.gin")
ENV = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT), TF_CPP_MIN_LOG_LEVEL="2")

# Runs that only compare weights play no games at their evaluation.
NO_GAMES = "imitation.ImitationTask.eval_games = 0"
STEPS = 20


def settings(*bindings: str) -> train.Settings:
    """The smoke settings with `bindings` applied, as `train.py` would build them."""
    gin.clear_config()
    train.parse_config([SMOKE], list(bindings), seed=None)
    return train.Settings()


def run(workdir, *bindings, strategy=None) -> train.Result:
    return train.train(settings(*bindings), str(workdir), strategy)


def weights(workdir) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith(("model/", "optimizer/", "step/")))
    return {n: reader.get_tensor(n) for n in names}


def command(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.alphastar_net.train", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=timeout,
    )


def test_a_short_run_learns_records_its_config_resumes_bit_for_bit_and_stops_at_a_non_finite_step(tmp_path):
    # One test, so that the parallel workers of `make test` do not both train the run
    # the checks share.
    straight = run(tmp_path / "straight", f"train.num_steps={STEPS}", "train.seed=5")
    first, last = straight.history[0], straight.history[-1]
    assert [h["step"] for h in straight.history] == [10, 20] and straight.step == STEPS
    assert last["loss"] <= 0.8 * first["loss"]  # steps 11-20 against steps 1-10
    assert last["accuracy/target_unit"] > first["accuracy/target_unit"]
    assert straight.eval["held_out"]["loss"] < first["loss"]
    assert set(straight.eval["play"]) == {"score", "expert_score", "random_score"}
    assert straight.eval["play"]["expert_score"] > straight.eval["play"]["random_score"]
    assert straight.skipped_steps == 0

    recorded = (tmp_path / "straight" / "config.gin").read_text()
    assert "train.seed = 5" in recorded and f"train.num_steps = {STEPS}" in recorded
    assert "ImitationTask.batch_size = 4" in recorded and "AlphaStarNet.config = @network.mini()" in recorded
    assert os.listdir(tmp_path / "straight" / "train") and os.listdir(tmp_path / "straight" / "eval")

    # Stopped after the checkpoint at step 10 and resumed: the same weights and optimizer
    # state, bit for bit.
    copy_checkpoints(tmp_path / "straight", tmp_path / "resumed", [10])
    resumed = run(tmp_path / "resumed", f"train.num_steps={STEPS}", "train.seed=5", NO_GAMES)
    assert resumed.step == STEPS and [h["step"] for h in resumed.history] == [STEPS]
    a, b = weights(tmp_path / "resumed"), weights(tmp_path / "straight")
    assert any(n.startswith("optimizer/") for n in a)  # the slots are saved too
    assert max_difference(a, b) == 0.0
    assert resumed.history[-1]["loss"] == last["loss"]

    # A learning rate of 1e39 (infinite in float32) overflows the next update: the run stops, naming the step,
    # and the last good checkpoint stays the newest.
    with pytest.raises(
        train.NonFiniteError, match=rf"step {STEPS + 1}: the loss, a gradient or the updated .*ckpt-{STEPS} is the last"
    ):
        run(tmp_path / "resumed", f"train.num_steps={STEPS + 5}", "train.seed=5", "optimizers.Adam.learning_rate=1e39")
    assert tf.train.latest_checkpoint(str(tmp_path / "resumed" / "checkpoints")).endswith(f"ckpt-{STEPS}")
    assert max_difference(weights(tmp_path / "resumed"), b) == 0.0


def test_settings_are_checked_before_anything_runs():
    for binding, message in [
        ("train.num_steps=5.5", "train.num_steps must be a positive integer"),
        ("train.checkpoint_every=0", "train.checkpoint_every must be a positive integer"),
        ("train.clip_global_norm=-1.0", "train.clip_global_norm must be a positive number or None"),
        ("train.on_nonfinite='ignore'", 'train.on_nonfinite must be "stop" or "skip"'),
        ("train.seed=-3", r"train.seed must be an integer in \[0, 2\*\*31\)"),
        ("train.jit_compile=1", "train.jit_compile must be True or False"),
        ("imitation.ImitationTask.eval_games=-1", "eval_games must be a non-negative integer"),
        ("imitation.ImitationTask.solved_accuracy=1.5", r"solved_accuracy must be in \(0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            settings(binding)
    gin.clear_config()


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


# --- slow: each a few more traced runs ------------------------------------------------------


@pytest.mark.slow
def test_a_truncated_latest_checkpoint_falls_back_and_skip_mode_undoes_steps(tmp_path):
    run(tmp_path / "a", "train.num_steps=20", NO_GAMES)
    checkpoints = tmp_path / "a" / "checkpoints"
    (data,) = checkpoints.glob("ckpt-20.data-*")
    data.write_bytes(data.read_bytes()[:100])  # a write cut short
    (checkpoints / "checkpoint").write_text("")  # and an empty list of checkpoints
    resumed = run(tmp_path / "a", "train.num_steps=30", NO_GAMES)
    straight = run(tmp_path / "b", "train.num_steps=30", NO_GAMES)
    assert (
        resumed.history[0]["step"] == 20 and resumed.history[-1] == straight.history[-1]
    )  # it went back to step 10 and redid 11..20
    assert max_difference(weights(tmp_path / "a"), weights(tmp_path / "b")) == 0.0
    skip = ["optimizers.Adam.learning_rate=1e39", "train.on_nonfinite='skip'", "train.log_every=1", NO_GAMES]
    result = run(tmp_path / "skip", "train.num_steps=3", "train.checkpoint_every=1", *skip)
    assert result.step == 3 and result.skipped_steps == 3
    assert [line["skipped_steps"] for line in result.history] == [1, 2, 3]
    slots = [v for n, v in weights(tmp_path / "skip").items() if n.startswith("optimizer/") and "/m/" in n]
    assert slots and all(not np.any(v) for v in slots)  # every step undone: the moments still zero


@pytest.mark.slow
def test_replicas_train_as_one_device_on_the_whole_batch(tmp_path, mirrored):
    # Plain SGD, whose update is linear in the gradient: Adam divides by the gradient's
    # own size, so a weight with a gradient near zero moves by up to the learning rate
    # whichever way float rounding of the all-reduce tips it (measured: 9e-4 after 3
    # steps), which would hide whether replicas train as one device.
    steps = ["train.num_steps=3", "train.log_every=1", "train.optimizer=@optimizers.SGD()"]
    steps += ["optimizers.SGD.learning_rate=0.1", NO_GAMES]
    replicated = run(tmp_path / "mirrored", *steps, strategy=mirrored)
    single = run(tmp_path / "single", *steps)
    for a, b in zip(replicated.history, single.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert max_difference(weights(tmp_path / "mirrored"), weights(tmp_path / "single")) < 1e-5


@pytest.mark.slow
def test_command_line(tmp_path):
    out = command(f"--workdir={tmp_path}", f"--gin_config={SMOKE}", "--gin_bindings=train.num_steps=10", "--seed=3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "10/10" in out.stderr and "eval held_out" in out.stderr and "play: score" in out.stderr
    assert "train.seed = 3" in (tmp_path / "config.gin").read_text()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-10")
    nan = command(
        f"--workdir={tmp_path / 'nan'}",
        f"--gin_config={SMOKE}",
        "--gin_bindings=optimizers.Adam.learning_rate=1e39",
        f"--gin_bindings={NO_GAMES}",
    )
    assert nan.returncode == 1, nan.stderr[-2000:]
    assert "the loss, a gradient or the updated weights are not finite" in nan.stderr
    assert "no checkpoint yet" in nan.stderr


@pytest.mark.slow
def test_a_run_killed_mid_flight_resumes_to_the_same_weights(tmp_path):
    args = [f"--gin_config={SMOKE}", "--gin_bindings=train.num_steps=60", "--gin_bindings=train.checkpoint_every=7"]
    args += [f"--gin_bindings={NO_GAMES}", "--gin_bindings=train.eval_every=60"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.alphastar_net.train", f"--workdir={killed}", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and not list((killed / "checkpoints").glob("ckpt-21.index")):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert command(f"--workdir={killed}", *args).returncode == 0
    assert command(f"--workdir={tmp_path / 'straight'}", *args).returncode == 0
    assert max_difference(weights(killed), weights(tmp_path / "straight")) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--workdir is required"),
        (["--workdir=/proc/forbidden", f"--gin_config={SMOKE}"], "--workdir=/proc/forbidden cannot be written"),
        (["--workdir=/tmp/x", "--replicas=2"], "replicas=2 splits the CPU for the mirrored strategy only"),
    ],
)
def test_command_line_errors(args, message):
    env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
    out = subprocess.run(
        [sys.executable, "-m", "models.alphastar_net.train", *args], capture_output=True, text=True, cwd=ROOT, env=env
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


@pytest.mark.slow
def test_two_workers_train_as_one_process_on_the_whole_batch(tmp_path):
    steps = ["train.num_steps=3", "train.checkpoint_every=3", "train.eval_every=3", NO_GAMES]
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(
            ENV, TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        )
        args = [f"--workdir={tmp_path / 'cluster'}", "--strategy=multi_worker", f"--gin_config={SMOKE}", "--seed=4"]
        args += [f"--gin_bindings={b}" for b in steps]
        script = "import sys; from tests.models.alphastar_net import worker; worker.main(sys.argv[1:])"
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
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    first, second = (dict(np.load(tmp_path / f"weights_{i}.npz")) for i in range(2))
    assert max_difference(first, second) == 0.0
    one = settings("train.seed=4", *steps)
    model = one.model(interface=one.task.interface)
    train.train(one, str(tmp_path / "single"), model=model)
    assert max_difference(first, {v.name: v.numpy() for v in model.variables}) < 1e-5


@pytest.mark.slow
def test_behaviour_cloning_reaches_95_percent_on_every_head(tmp_path):
    """The reproduction, opt-in: bc_mini.gin as it is (batches of 16 episodes, Adam 1e-3)
    is solved, every head at least 95 % right on the held-out games, at its first
    evaluation, step 500; the clone then scores within 1 of the expert in play."""
    gin.clear_config()
    config = os.path.join(ROOT, "models", "alphastar_net", "configs", "bc_mini.gin")
    train.parse_config([config], ["train.stop_when_solved=True"], seed=None)
    result = train.train(train.Settings(), str(tmp_path))
    assert result.solved_at == 500, result.eval
    held_out, play = result.eval["held_out"], result.eval["play"]
    assert all(held_out[f"accuracy/{k}"] >= 0.95 for k in train.imitation.HEADS), held_out
    assert abs(play["score"] - play["expert_score"]) < 1.0 and play["score"] > play["random_score"] + 10
