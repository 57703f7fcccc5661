"""The GQN training setup: it learns, resumes exactly, survives faults, runs on replicas, from the command line."""

import os
import re
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from models.gqn import train
from tests.models.checks import copy_checkpoints, max_difference

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir)
SMOKE = os.path.join(ROOT, "models", "gqn", "configs", "smoke.gin")
ENV = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT), TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The smoke scenes, generated once per test process (the first run makes them)."""
    return str(tmp_path_factory.mktemp("scenes"))


def settings(data_dir, *bindings: str) -> train.Settings:
    """The smoke settings on the scenes in `data_dir` with `bindings` applied, as `train.py` would build them.

    The gin config stays in force afterwards, as in a program: `settings.model` makes
    the model from it, and the run records it.
    """
    gin.clear_config()
    train.parse_config([SMOKE], [f"DATA_DIR = '{data_dir}'", *bindings], seed=None)
    return train.Settings()


def run(data_dir, workdir, *bindings, strategy=None) -> train.Result:
    return train.train(settings(data_dir, *bindings), str(workdir), strategy)


def weights(workdir) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith(("model/", "optimizer/", "step/")))
    return {n: reader.get_tensor(n) for n in names}


def command(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.gqn.train", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def learned(data_dir, tmp_path_factory):
    """One short run that the learning checks share: 200 smoke steps."""
    workdir = tmp_path_factory.mktemp("learned")
    result = run(
        data_dir,
        workdir,
        "train.num_steps=200",
        "train.log_every=20",
        "train.eval_every=200",
        "train.image_every=200",
        "train.checkpoint_every=200",
    )
    return workdir, result


def test_loss_falls_and_the_images_are_written(learned):
    workdir, result = learned
    first, last = result.history[0], result.history[-1]
    assert first["step"] == 20 and last["step"] == 200 and result.step == 200 and result.skipped_steps == 0
    # sigma falls from 2.0 to 0.7 over the first 50 steps, which raises the NLL of a
    # fixed error; the MSE of the mean image is what must fall whatever sigma does.
    assert last["sigma"] == pytest.approx(0.7) and first["sigma"] > 1.5
    assert last["mse"] <= 0.5 * first["mse"], (first, last)
    # At sigma 0.7 the NLL's floor is 0.5623 nats per pixel and channel (768 of them).
    assert last["nll"] >= 0.5623 * 16 * 16 * 3 - 1e-3
    test = result.eval["test"]
    assert set(test) == {"loss", "nll", "kl", "mse", "prediction_mse", "mean_image_mse", "ratio"}
    assert all(np.isfinite(v) for v in test.values())
    # A PNG grid per image step: 2 examples x (2 context views, truth, reconstruction, sample).
    (png,) = (workdir / "images").glob("step-*.png")
    assert png.name == "step-0000200.png"
    image = tf.io.decode_png(png.read_bytes()).numpy()
    assert image.shape == (2 * 16, 5 * 16, 3) and image.std() > 0
    assert os.listdir(workdir / "train") and os.listdir(workdir / "eval")
    # The trained model back from the workdir alone, its weights those of the checkpoint.
    _, model, step = train.restore(str(workdir))
    assert step == 200
    saved = weights(workdir)
    saved = [v for n, v in saved.items() if n.startswith("model/")]
    assert len(saved) == len(model.variables)
    for variable in model.variables:
        assert any(v.shape == variable.shape and np.array_equal(v, variable.numpy()) for v in saved), variable.name
    gin.clear_config()


def test_resumed_runs_end_with_the_same_weights_bit_for_bit_also_past_a_truncated_checkpoint(data_dir, tmp_path):
    straight = run(data_dir, tmp_path / "straight", "train.num_steps=20")
    expected = weights(tmp_path / "straight")

    # Stopped after the checkpoint at step 10 and resumed: the same weights and
    # optimizer state, bit for bit.
    copy_checkpoints(tmp_path / "straight", tmp_path / "resumed", [10])
    resumed = run(data_dir, tmp_path / "resumed", "train.num_steps=20")
    assert resumed.step == 20 and [h["step"] for h in resumed.history] == [20]
    got = weights(tmp_path / "resumed")
    assert any(n.startswith("optimizer/") for n in got)  # the slots are saved too
    assert max_difference(got, expected) == 0.0
    assert resumed.history[-1] == straight.history[-1]

    # Killed while writing step 20's checkpoint, with an empty list of checkpoints: the
    # run goes back to step 10 and redoes 11..20.
    copy_checkpoints(tmp_path / "straight", tmp_path / "cut", [10, 20])
    checkpoints = tmp_path / "cut" / "checkpoints"
    (data,) = checkpoints.glob("ckpt-20.data-*")
    data.write_bytes(data.read_bytes()[:100])  # a write cut short
    (checkpoints / "checkpoint").write_text("")
    fallen_back = run(data_dir, tmp_path / "cut", "train.num_steps=20")
    assert fallen_back.history[0]["step"] == 20
    assert max_difference(weights(tmp_path / "cut"), expected) == 0.0
    assert fallen_back.history[-1] == straight.history[-1]
    # Nothing readable at all: an error naming each checkpoint, not a fresh start.
    for data in checkpoints.glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"no checkpoint in .*checkpoints can be read:\n  .*ckpt-20"):
        run(data_dir, tmp_path / "cut", "train.num_steps=30")


@pytest.mark.slow
def test_resume_is_bit_exact_under_xla_too(data_dir, tmp_path):
    xla = ["train.jit_compile=True", "train.checkpoint_every=2"]
    run(data_dir, tmp_path / "a", "train.num_steps=2", *xla)
    run(data_dir, tmp_path / "a", "train.num_steps=3", *xla)
    run(data_dir, tmp_path / "b", "train.num_steps=3", *xla)
    run(data_dir, tmp_path / "function", "train.num_steps=3", "train.checkpoint_every=2")
    xla_weights = weights(tmp_path / "a")
    assert max_difference(xla_weights, weights(tmp_path / "b")) == 0.0
    assert max_difference(xla_weights, weights(tmp_path / "function")) < 1e-4  # the same maths, rounded apart


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_a_non_finite_step_never_reaches_the_weights(data_dir, tmp_path, mode):
    # A learning rate of 1e39, beyond float32: Adam's first update makes the weights
    # infinite (1e38 would not: Adam's steps are about the learning rate in size).
    huge = ["lr/schedules.LinearDecay.initial_value=1e39", "lr/schedules.LinearDecay.final_value=1e39"]
    bindings = [*huge, "train.checkpoint_every=1", "train.num_steps=4", f"train.on_nonfinite='{mode}'"]
    bindings += ["train.log_every=1"]
    if mode == "stop":
        # A good checkpoint first, then the overflow: the run stops, that checkpoint intact.
        run(data_dir, tmp_path, "train.num_steps=2", "train.checkpoint_every=2")
        good = weights(tmp_path)
        with pytest.raises(
            train.NonFiniteError, match=r"step 3: the loss, a gradient or the updated .*ckpt-2 is the last good state"
        ):
            run(data_dir, tmp_path, *bindings)
        assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
        assert max_difference(weights(tmp_path), good) == 0.0
    else:
        result = run(data_dir, tmp_path, *bindings)
        assert result.step == 4 and result.skipped_steps == 4
        assert [line["skipped_steps"] for line in result.history] == [1, 2, 3, 4]
        assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
        # Every step undone: Adam's moments are still at their initial zeros.
        slots = {n: v for n, v in weights(tmp_path).items() if n.startswith("optimizer/") and v.dtype != np.int64}
        assert slots and all(not np.any(v) for v in slots.values())
    for name, value in weights(tmp_path).items():
        assert np.all(np.isfinite(value)), name


def test_replicas_train_as_one_device_on_the_whole_batch(data_dir, tmp_path, mirrored):
    # Four replicas, each on its quarter of every batch, against one device on the whole.
    # Plain SGD: Adam's first steps are about sign(gradient) * learning rate, so a
    # gradient near zero whose last bit differs (the all-reduce sums in another order)
    # can move a weight by up to twice the learning rate; SGD keeps rounding as rounding.
    steps = ["train.num_steps=3", "train.log_every=1", "train.checkpoint_every=3"]
    steps += ["train.optimizer=@optimizers.SGD()", "optimizers.SGD.learning_rate=0.01"]
    replicated = run(data_dir, tmp_path / "mirrored", *steps, strategy=mirrored)
    single = run(data_dir, tmp_path / "single", *steps)
    assert replicated.step == 3 and np.isfinite(replicated.history[-1]["loss"])
    for a, b in zip(replicated.history, single.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert max_difference(weights(tmp_path / "mirrored"), weights(tmp_path / "single")) < 1e-5


def test_settings_are_checked_before_anything_runs(data_dir):
    for binding, message in [
        ("train.num_steps=5.5", "train.num_steps must be a positive integer"),
        ("train.num_steps='five'", "train.num_steps must be a positive integer"),
        ("train.checkpoint_every=0", "train.checkpoint_every must be a positive integer"),
        ("train.image_examples=0", "train.image_examples must be a positive integer"),
        ("train.clip_global_norm=-1.0", "train.clip_global_norm must be a positive number or None"),
        ("train.on_nonfinite='ignore'", 'train.on_nonfinite must be "stop" or "skip"'),
        ("train.seed=-3", r"train.seed must be an integer in \[0, 2\*\*31\)"),
        ("train.jit_compile=1", "train.jit_compile must be True or False"),
        ("train.sigma=0.0", "train.sigma must be a positive number or a schedule"),
        ("train.sigma='wide'", "train.sigma must be a positive number or a schedule"),
    ]:
        with pytest.raises(ValueError, match=message):
            settings(data_dir, binding)
    # The schedules name their own settings.
    with pytest.raises(ValueError, match="decay_steps"):
        settings(data_dir, "sigma/schedules.LinearDecay.decay_steps=0")
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


def test_the_paper_and_small_configs_parse_to_the_papers_schedules():
    for name in ("paper", "small"):
        gin.clear_config()
        train.parse_config([os.path.join(ROOT, "models", "gqn", "configs", f"{name}.gin")], [], seed=None)
        settings = train.Settings()
        assert float(settings.sigma(0)) == pytest.approx(2.0)
        lr = settings.optimizer.learning_rate
        assert float(lr(0)) == pytest.approx(5e-4)
        if name == "paper":
            assert float(settings.sigma(100_000)) == pytest.approx(1.35)
            assert float(settings.sigma(200_000)) == pytest.approx(0.7)
            assert float(lr(1_600_000)) == pytest.approx(5e-5)
            assert settings.task.batch_size == 36 and settings.task.context_size == 5
            assert settings.num_steps == 2_000_000
            model = settings.model(image_size=64)
            assert model.num_steps == 12 and model.representation_kind == "tower"
    gin.clear_config()


def test_the_recorded_config_is_the_operative_one_and_a_changed_resume_keeps_both(data_dir, tmp_path, caplog):
    run(data_dir, tmp_path, "train.num_steps=2", "train.seed=5")
    recorded = (tmp_path / "config.gin").read_text()
    assert "train.seed = 5" in recorded and "train.num_steps = 2" in recorded
    assert "GQN.num_steps = 2" in recorded
    run(data_dir, tmp_path, "train.num_steps=4", "train.seed=5")
    assert (tmp_path / "config.before-step-2.gin").read_text() == recorded
    assert "train.num_steps = 4" in (tmp_path / "config.gin").read_text()
    assert any(
        "-train.num_steps = 2" in r.getMessage() and "+train.num_steps = 4" in r.getMessage() for r in caplog.records
    )


def test_command_line(data_dir, tmp_path):
    out = command(
        f"--workdir={tmp_path}",
        f"--gin_config={SMOKE}",
        f"--gin_bindings=DATA_DIR='{data_dir}'",
        "--gin_bindings=train.num_steps=10",
        "--gin_bindings=train.eval_every=10",
        "--seed=3",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "10/10" in out.stderr and "eval test" in out.stderr and "nll" in out.stderr and "kl" in out.stderr
    assert "train.seed = 3" in (tmp_path / "config.gin").read_text()
    assert os.listdir(tmp_path / "train") and os.listdir(tmp_path / "eval")
    assert [p.name for p in (tmp_path / "images").glob("*.png")] == ["step-0000010.png"]
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-10")
    # A non-finite step: a non-zero exit that says what happened.
    nan = command(
        f"--workdir={tmp_path / 'nan'}",
        f"--gin_config={SMOKE}",
        f"--gin_bindings=DATA_DIR='{data_dir}'",
        "--gin_bindings=lr/schedules.LinearDecay.initial_value=1e39",
        "--gin_bindings=lr/schedules.LinearDecay.final_value=1e39",
    )
    assert nan.returncode == 1, nan.stderr[-2000:]
    assert "the loss, a gradient or the updated weights are not finite" in nan.stderr
    assert "no checkpoint yet" in nan.stderr


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
        [sys.executable, "-m", "models.gqn.train", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode != 0
    assert re.search(message, out.stderr), out.stderr[-1500:]
