"""The BigGAN training setup: it learns, resumes exactly, survives faults, runs on replicas.

One short run (the module's fixture, smoke.gin: tiny networks on shapes32, a checkpoint
every other step) serves as the uninterrupted reference the other tests resume from,
fall back to, break, or compare replicas with.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from models.biggan import metrics, train
from tests.models.checks import max_difference

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir)
SMOKE = os.path.join(ROOT, "models", "biggan", "configs", "smoke.gin")
ENV = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT), TF_CPP_MIN_LOG_LEVEL="2")

STEPS = 30
# A checkpoint every other step, all kept: the reference states the other tests start from.
REFERENCE = [f"train.num_steps={STEPS}", "train.checkpoint_every=2", "train.keep_checkpoints=100"]
REFERENCE += ["train.eval_every=30", "train.eval_examples=100"]
# A learning rate float32 cannot hold: the first update makes the weights infinite.
OVERFLOW = ["d/optimizers.Adam.learning_rate=1e39", "g/optimizers.Adam.learning_rate=1e39"]


def settings(*bindings: str) -> train.Settings:
    """The smoke settings with `bindings` applied, as `train.py` would build them."""
    gin.clear_config()
    train.parse_config([SMOKE], list(bindings), seed=None)
    return train.Settings()


def run(workdir, *bindings, strategy=None, extractor=None) -> train.Result:
    return train.train(settings(*REFERENCE, *bindings), str(workdir), strategy, extractor)


def weights(path) -> dict[str, np.ndarray]:
    """Every saved variable of a checkpoint (or of a workdir's newest) but the step counters."""
    path = str(path)
    if os.path.isdir(path):  # its newest checkpoint, found by the files (a copied workdir has no list)
        path = os.path.join(path, "checkpoints", f"ckpt-{newest_checkpoint(pathlib.Path(path))}")
    reader = tf.train.load_checkpoint(path)
    prefixes = ("generator/", "discriminator/", "g_ema/", "g_optimizer/", "d_optimizer/")
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith(prefixes))
    return {n: reader.get_tensor(n) for n in names}


def copy_until(reference, target, step: int):
    """A copy of the reference run's workdir as it stood after the checkpoint of `step`."""
    shutil.copytree(reference, target)
    for path in (target / "checkpoints").glob("ckpt-*"):
        if int(re.search(r"ckpt-(\d+)", path.name).group(1)) > step:
            path.unlink()
    (target / "checkpoints" / "checkpoint").unlink()
    return target


def newest_checkpoint(workdir) -> int:
    """The step of the newest checkpoint by its files (a copied workdir has no list of them)."""
    return max(int(re.search(r"ckpt-(\d+)", p.name).group(1)) for p in (workdir / "checkpoints").glob("ckpt-*.index"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(workdir, result) of the uninterrupted 30-step smoke run, evaluated at its end with a
    small untrained classifier as the extractor (the metrics' plumbing, not their values)."""
    workdir = tmp_path_factory.mktemp("reference")
    extractor = metrics.Classifier(10)
    extractor(tf.zeros([1, 32, 32, 3]))
    result = run(workdir, "train.log_every=10", extractor=extractor)
    return workdir, result


def test_a_short_run_moves_the_hinge_losses_the_expected_way(reference):
    # The discriminator learns to score real images above fakes, its hinge losses fall
    # from where two untrained networks start.
    workdir, result = reference
    first, last = result.history[0], result.history[-1]
    assert [h["step"] for h in result.history] == [10, 20, 30] and result.skipped_steps == 0
    d_first = first["d_loss_real"] + first["d_loss_fake"]
    d_last = last["d_loss_real"] + last["d_loss_fake"]
    assert d_last <= 0.75 * d_first, (d_first, d_last)
    assert last["d_real"] - last["d_fake"] >= 1.0, result.history
    figures = result.eval["samples"]
    assert set(figures) == {"fid", "inception_score", "inception_score_std", "accuracy"}
    assert all(np.isfinite(v) for v in figures.values()) and figures["fid"] > 0
    assert 1.0 <= figures["inception_score"] <= 10.0 and 0.0 <= figures["accuracy"] <= 1.0
    # The sample grid of the fixed latents and classes: 2 rows of the 10 classes, 33 pixels a cell.
    png = tf.io.decode_png(tf.io.read_file(str(workdir / "samples" / "step_00000030.png"))).numpy()
    assert png.shape == (2 * 33 + 1, 10 * 33 + 1, 3) and png.std() > 0
    assert any(os.scandir(workdir / "eval"))
    recorded = (workdir / "config.gin").read_text()
    assert "train.num_steps = 30" in recorded and "Generator.ch = 4" in recorded


def test_resume_and_fallback_past_a_truncated_checkpoint_end_bit_for_bit(reference, tmp_path):
    # The run as it stood after step 22, its newest checkpoint cut short and its list of
    # checkpoints empty: it goes back to step 20, and ends where the reference does.
    workdir, straight = reference
    resumed_dir = copy_until(workdir, tmp_path / "resumed", 22)
    (data,) = (resumed_dir / "checkpoints").glob("ckpt-22.data-*")
    data.write_bytes(data.read_bytes()[:100])
    (resumed_dir / "checkpoints" / "checkpoint").write_text("")
    resumed = run(resumed_dir, "train.log_every=10", "train.eval_examples=0")
    assert resumed.history[0]["step"] == 30 and resumed.step == 30
    a, b = weights(resumed_dir), weights(workdir)
    assert any(n.startswith("g_ema/") for n in a) and any(n.startswith("d_optimizer/") for n in a)
    assert max_difference(a, b) == 0.0
    assert resumed.history[-1] == straight.history[-1]
    # Nothing readable at all: an error naming each checkpoint, not a fresh start.
    for data in (resumed_dir / "checkpoints").glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"no checkpoint in .*checkpoints can be read:\n  .*ckpt-30"):
        run(resumed_dir, "train.num_steps=40")


@pytest.mark.parametrize("mode", ["stop", pytest.param("skip", marks=pytest.mark.slow)])
def test_a_non_finite_step_never_reaches_the_weights(reference, tmp_path, mode):
    workdir, _ = reference
    broken = copy_until(workdir, tmp_path / mode, 30)
    good = weights(workdir)
    bindings = [*OVERFLOW, "train.num_steps=32", "train.checkpoint_every=1", "train.log_every=1"]
    bindings += [f"train.on_nonfinite='{mode}'", "train.eval_examples=0"]
    if mode == "stop":
        with pytest.raises(
            train.NonFiniteError, match=r"step 31: a loss, a gradient or the updated .*ckpt-30 is the last good state"
        ):
            run(broken, *bindings)
        assert newest_checkpoint(broken) == 30
    else:
        result = run(broken, *bindings)
        assert result.step == 32 and result.skipped_steps == 2
        assert [line["skipped_steps"] for line in result.history] == [1, 2]
        assert newest_checkpoint(broken) == 32
    # Every step undone or never saved: all weights, averages and optimizer slots as at step 30.
    assert max_difference(weights(broken), good) == 0.0


# Opt-in for its cost (two runs, one under four replicas: minutes on two cores); the
# cross-replica generator against one device on the whole batch runs by default in
# test_biggan.py.
@pytest.mark.slow
def test_replicas_with_cross_replica_batch_norm_train_as_one_device(tmp_path, mirrored):
    # Four replicas (cross-replica batch norm on), each on its quarter of every batch,
    # against one device on the whole. Plain SGD: Adam's first steps (beta1 = 0) are about
    # sign(gradient) * learning rate, so a gradient near zero whose last bit differs (the
    # all-reduce sums in another order) moves a weight by up to twice the learning rate
    # per update; SGD keeps the all-reduce's rounding as rounding.
    steps = ["train.num_steps=2", "train.log_every=1", "train.eval_examples=0"]
    steps += [f"train.{n}_optimizer=@{n}/optimizers.SGD()" for n in ("g", "d")]
    steps += [f"{n}/optimizers.SGD.learning_rate=0.01" for n in ("g", "d")]
    result = run(tmp_path / "mirrored", *steps, strategy=mirrored)
    assert result.step == 2 and np.isfinite(result.history[-1]["g_loss"])
    run(tmp_path / "single", *steps)
    replicated, single = weights(tmp_path / "mirrored"), weights(tmp_path / "single")
    assert any("moving_mean" in n for n in replicated)
    assert max_difference(replicated, single) < 1e-5


def test_settings_are_checked_before_anything_runs():
    for binding, message in [
        ("train.num_steps=5.5", "train.num_steps must be a positive integer"),
        ("train.checkpoint_every=0", "train.checkpoint_every must be a positive integer"),
        ("train.on_nonfinite='ignore'", 'train.on_nonfinite must be "stop" or "skip"'),
        ("train.seed=-3", r"train.seed must be an integer in \[0, 2\*\*31\)"),
        ("train.jit_compile=1", "train.jit_compile must be True or False"),
        ("train.ema_decay=1.0", r"train.ema_decay must be a number in \[0, 1\)"),
        ("train.ema_start=-1", "train.ema_start must be a non-negative integer"),
        ("train.ortho_beta=-1e-4", "train.ortho_beta must be a non-negative number"),
        ("train.truncation=0.0", "train.truncation must be a positive number or None"),
    ]:
        with pytest.raises(ValueError, match=message):
            settings(binding)
    gin.clear_config()


def test_networks_that_do_not_fit_the_data_are_named(tmp_path):
    for binding, message in [
        ("biggan.Generator.num_classes=7", r"the generator's num_classes is 7 but the data's .* is 10"),
        ("biggan.Discriminator.resolution=64", r"the discriminator's resolution is 64 but the data's .* is 32"),
        ("data.GANTask.dim_z=20", r"the generator's dim_z is 16 but data.GANTask.dim_z is 20"),
    ]:
        with pytest.raises(ValueError, match=message):
            run(tmp_path, binding)
    gin.clear_config()


def command(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.biggan.train", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=timeout,
    )


def test_command_line(tmp_path):
    out = command(f"--workdir={tmp_path}", f"--gin_config={SMOKE}", "--gin_bindings=train.num_steps=2", "--seed=3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2/2" in out.stderr
    assert "train.seed = 3" in (tmp_path / "config.gin").read_text()
    assert os.listdir(tmp_path / "train") and os.listdir(tmp_path / "samples")
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    # A bad flag: named, before anything runs.
    bad = command(f"--workdir={tmp_path / 'bad'}", "--replicas=2")
    assert bad.returncode != 0 and "replicas=2 splits the CPU for the mirrored strategy only" in bad.stderr


@pytest.mark.slow
def test_command_line_exits_non_zero_on_a_non_finite_step(tmp_path):
    nan = command(f"--workdir={tmp_path}", f"--gin_config={SMOKE}", *(f"--gin_bindings={b}" for b in OVERFLOW))
    assert nan.returncode == 1, nan.stderr[-2000:]
    assert "a loss, a gradient or the updated weights are not finite" in nan.stderr
    assert "no checkpoint yet" in nan.stderr


@pytest.mark.slow
def test_shapes32_learns(tmp_path):
    """The reproduction's start, opt-in: shapes32.gin for 1,000 steps; the samples' FID
    under the offline classifier falls from the first evaluation to the last."""
    gin.clear_config()
    config = os.path.join(ROOT, "models", "biggan", "configs", "shapes32.gin")
    train.parse_config([config], ["train.num_steps=1000", "train.eval_every=250", "train.eval_examples=1000"], None)
    fids = []
    evaluation = train.Evaluation.__call__

    def recording(self, *args):
        figures = evaluation(self, *args)
        fids.append(figures["samples"]["fid"])
        return figures

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train.Evaluation, "__call__", recording)
        train.train(train.Settings(), str(tmp_path))
    assert len(fids) == 4 and fids[-1] < fids[0], fids
