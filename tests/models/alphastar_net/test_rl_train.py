"""The reinforcement-learning mode: its loss pushes the right way, runs resume exactly, bad settings fail.

Runs use `rl_smoke.gin` (the tiny network, an 8 x 8 game of 16 ticks, 4 games a step);
the reproduction on the mini game is `slow`.
"""

import os

import gin
import numpy as np
import pytest
import tensorflow as tf

import core
from models.alphastar_net import environment, network, reinforcement, train

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir)
CONFIGS = os.path.join(ROOT, "models", "alphastar_net", "configs")
SMOKE = os.path.join(CONFIGS, "rl_smoke.gin")
NO_GAMES = "reinforcement.ReinforcementTask.eval_games = 0"


def settings(*bindings: str, config: str = SMOKE) -> train.Settings:
    gin.clear_config()
    train.parse_config([config], list(bindings), seed=None)
    return train.Settings()


def run(workdir, *bindings) -> train.Result:
    return train.train(settings(*bindings), str(workdir))


def checkpointed(workdir) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
    prefixes = ("model/", "reference/", "optimizer/", "step/")
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith(prefixes))
    return {n: reader.get_tensor(n) for n in names}


def no_op_probability(net, batch) -> float:
    """The teacher-forced probability of no_op, averaged over the trajectories' steps."""
    state = net.initial_state(batch["reward"].shape[1])
    outputs, _ = net.unroll(batch["observation"], state, batch["action"])
    p = tf.nn.softmax(outputs.logits["action_type"])[..., environment.NO_OP]
    return float(tf.reduce_sum(p * tf.cast(batch["mask"], tf.float32)) / np.sum(batch["mask"]))


def test_the_loss_raises_the_probability_of_a_rewarded_action_type():
    # A degenerate reward, 1 for every no_op and 0 otherwise: the V-trace, UPGO and
    # value terms together must make no_op more likely on the games the actors play.
    core.utils.set_seed(0)
    task = reinforcement.ReinforcementTask(
        environment.GameSettings(map_size=8, spatial_size=8, horizon=16), batch_size=4, eval_games=0
    )
    net = network.AlphaStarNet(task.interface, network.tiny())
    reference = network.AlphaStarNet(task.interface, network.tiny())
    actor = reinforcement.Actor(net)

    def games(step):
        batch = task.collect(actor, seed=0, step=step)
        batch["reward"] = ((batch["action"]["action_type"] == environment.NO_OP) & batch["mask"]).astype(np.float32)
        batch["observation"]["spatial"] = batch["observation"]["spatial"].astype(np.float32)
        return tf.nest.map_structure(tf.convert_to_tensor, batch)

    optimizer = core.optimizers.SGD(learning_rate=0.1)

    @tf.function
    def update(batch):
        with tf.GradientTape() as tape:
            loss, metrics = task.loss_and_metrics(net, reference, batch)
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply(grads, net.trainable_variables)
        return metrics

    held_out = games(1000)
    before = no_op_probability(net, held_out)
    for step in range(15):
        update(games(step))
    after = no_op_probability(net, held_out)
    assert after > before + 0.2, (before, after)


def test_a_short_run_learns_its_values_resumes_bit_for_bit_and_starts_from_a_checkpoint(tmp_path):
    straight = run(tmp_path / "straight", "train.num_steps=20", "train.log_every=5", "train.seed=3")
    assert [h["step"] for h in straight.history] == [5, 10, 15, 20] and straight.skipped_steps == 0
    first, last = straight.history[0], straight.history[-1]
    assert last["loss/value"] < 0.5 * first["loss/value"], (first, last)
    assert all(np.isfinite(h[k]) for h in straight.history for k in ("loss", "entropy", "kl", "rho"))
    assert first["kl"] >= 0 and last["kl"] > 0  # from scratch the reference is the initial network
    play = straight.start_eval["play"]
    assert set(play) == {"score", "expert_score", "random_score"} and play["expert_score"] > play["random_score"]
    recorded = (tmp_path / "straight" / "config.gin").read_text()
    assert "train.seed = 3" in recorded and "ReinforcementTask.batch_size = 4" in recorded

    # Stopped at step 10 and resumed: the same weights, reference and optimizer state, bit for bit.
    run(tmp_path / "resumed", "train.num_steps=10", "train.log_every=5", "train.seed=3", NO_GAMES)
    resumed = run(tmp_path / "resumed", "train.num_steps=20", "train.log_every=5", "train.seed=3", NO_GAMES)
    assert resumed.start_eval is None and [h["step"] for h in resumed.history] == [15, 20]
    a, b = checkpointed(tmp_path / "resumed"), checkpointed(tmp_path / "straight")
    assert any(n.startswith("reference/") for n in a) and any(n.startswith("optimizer/") for n in a)
    assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)
    assert resumed.history[-1] == straight.history[-1]

    # Started from the first run's network (as from a cloned one): it is the frozen reference.
    init = f"train.init_checkpoint='{tmp_path / 'straight'}'"
    started = run(tmp_path / "started", "train.num_steps=2", "train.log_every=1", init, NO_GAMES)
    assert started.history[0]["kl"] < 1e-6 < last["kl"]  # the first step's policy is the reference
    c = checkpointed(tmp_path / "started")
    model = {n[len("model/") :]: v for n, v in b.items() if n.startswith("model/")}
    assert all(np.array_equal(c["reference/" + n], v) for n, v in model.items())
    assert not all(np.array_equal(c["model/" + n], v) for n, v in model.items())  # two steps moved it
    gin.clear_config()


def test_settings_are_checked_before_anything_runs(tmp_path):
    task = "reinforcement.ReinforcementTask"
    for binding, message in [
        (f"{task}.batch_size=0", "ReinforcementTask: batch_size must be a positive integer, got 0"),
        (f"{task}.td_lambda=1.5", r"ReinforcementTask: td_lambda must be in \[0, 1\], got 1.5"),
        (f"{task}.discount=-0.1", r"ReinforcementTask: discount must be in \[0, 1\]"),
        (f"{task}.kl_weight=-1.0", "ReinforcementTask: kl_weight must be a non-negative number, got -1.0"),
        (f"{task}.temperature=0.0", "ReinforcementTask: temperature must be a positive number"),
        (f"{task}.clip_rho_threshold=0.0", "ReinforcementTask: clip_rho_threshold must be a positive number"),
        ("train.init_checkpoint=''", "train.init_checkpoint must be a checkpoint path, a workdir, or None"),
    ]:
        with pytest.raises(ValueError, match=message):
            settings(binding)
    with pytest.raises(ValueError, match="train.init_checkpoint must be None in behaviour cloning"):
        settings("train.init_checkpoint='/tmp'", config=os.path.join(CONFIGS, "smoke.gin"))
    missing = tmp_path / "no_such_run"
    with pytest.raises(ValueError, match=r"train.init_checkpoint = '.*no_such_run' is not a checkpoint"):
        run(tmp_path / "rl", f"train.init_checkpoint='{missing}'")
    assert not os.path.exists(tmp_path / "rl" / "checkpoints")  # it stopped before building anything
    gin.clear_config()
    with pytest.raises(ValueError, match="--init_checkpoint=/a disagrees with train.init_checkpoint = '/b'"):
        train.parse_config([SMOKE], ["train.init_checkpoint='/b'"], seed=None, init_checkpoint="/a")
    gin.clear_config()
