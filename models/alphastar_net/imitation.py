"""Behaviour cloning of the game's scripted expert, as `train.py` drives it: batches, loss, metrics, evaluation.

The network is teacher-forced with the expert's actions over whole episodes (time-major
[T, B]); the loss is the negative log-likelihood of every argument the action type uses
(the others have log-probability 0: they add nothing), averaged over the [T, B] step
slots of the batch (padding slots count 0). The metrics are the loss and, per head, the
fraction of used arguments the network's most likely choice gets right given the
expert's earlier choices (selected units: the whole selection right, every pick and the
end of selection). Evaluation measures the same on held-out games, and lets the network
play games against the scripted expert's and a random agent's scores on the same games.

`Agent` wraps a network in the `tf.function`s evaluation calls; `play` runs a batch of
games with any policy.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from models.alphastar_net import data, environment, network, specs

HEADS = specs.ACTION_KEYS


def head_counts(outputs: network.AgentOutput, actions: dict[str, tf.Tensor]) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """Per head: (right, used), float32 counts of the used arguments whose most likely choice is the given one."""
    counts = {}
    for key in HEADS:
        given = actions[key]
        predicted = tf.argmax(outputs.logits[key], axis=-1, output_type=tf.int32)
        if key == "selected_units":
            picks = given >= 0
            wrong = tf.reduce_any(picks & tf.not_equal(predicted, given), axis=-1)
            used = picks[..., 0]
            right = used & tf.logical_not(wrong)
        else:
            used = given >= 0
            right = used & tf.equal(predicted, given)
        counts[key] = (tf.reduce_sum(tf.cast(right, tf.float32)), tf.reduce_sum(tf.cast(used, tf.float32)))
    return counts


def negative_log_likelihood(outputs: network.AgentOutput) -> tf.Tensor:
    """-log pi(a_t | x_t) [T, B]: the sum over every head (and pick) of the given actions' log-probabilities."""
    total = 0.0
    for key in HEADS:
        log_prob = outputs.log_probs[key]
        if key == "selected_units":
            log_prob = tf.reduce_sum(log_prob, axis=-1)
        total -= log_prob
    return total


class ImitationTask:
    """Behaviour cloning on the game (module docstring).

    Args:
      game: the game's settings (the mini game by default).
      batch_size: episodes per training step (the global batch).
      num_episodes: the pool of expert episodes training draws from.
      num_held_out: held-out expert episodes (other games) for the evaluation's accuracies.
      eval_batch_size: held-out episodes per evaluation batch.
      eval_games: games the network plays at each evaluation (0: none).
      eval_temperature: the sampling temperature of those games (AlphaStar plays at 0.8).
      solved_accuracy: solved when every head's held-out accuracy reaches this.
      data_seed: which pools of games.
    """

    def __init__(
        self,
        game: environment.GameSettings | None = None,
        batch_size: int = 16,
        num_episodes: int = 2048,
        num_held_out: int = 128,
        eval_batch_size: int = 64,
        eval_games: int = 32,
        eval_temperature: float = 0.8,
        solved_accuracy: float = 0.95,
        data_seed: int = 0,
    ):
        self.game = game or environment.GameSettings()
        self.data = data.ExpertData(self.game, batch_size, num_episodes, num_held_out, data_seed)
        for name, value, least in (("eval_batch_size", eval_batch_size, 1), ("eval_games", eval_games, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                what = "a positive" if least else "a non-negative"
                raise ValueError(f"ImitationTask: {name} must be {what} integer, got {value!r}")
        if not 0.0 < float(solved_accuracy) <= 1.0:
            raise ValueError(f"ImitationTask: solved_accuracy must be in (0, 1], got {solved_accuracy!r}")
        self.eval_batch_size = int(eval_batch_size)
        self.eval_games = int(eval_games)
        self.eval_temperature = float(eval_temperature)
        self.solved_accuracy = float(solved_accuracy)
        self.data_seed = int(data_seed)
        self._baselines: dict[int, dict[str, float]] = {}

    @property
    def batch_size(self) -> int:
        return self.data.batch_size

    @property
    def interface(self) -> specs.Interface:
        return self.data.interface

    def dataset(self, seed: int, start_step: int, context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """This input pipeline's per-replica batches of expert trajectories from `start_step` (`data.ExpertData`)."""
        return self.data.dataset(seed, start_step, context)

    def loss(self, outputs: network.AgentOutput, batch: dict) -> tf.Tensor:
        """The negative log-likelihood of the expert's actions, mean over the batch's [T, B] step slots."""
        return tf.reduce_mean(negative_log_likelihood(outputs))

    def metrics(self, outputs: network.AgentOutput, batch: dict) -> dict[str, tf.Tensor]:
        figures = {"loss": self.loss(outputs, batch)}
        for key, (right, used) in head_counts(outputs, batch["action"]).items():
            figures[f"accuracy/{key}"] = tf.math.divide_no_nan(right, used)
        return figures

    def evaluate(self, agent: "Agent", seed: int) -> dict[str, dict[str, float]]:
        """ "held_out": loss and per-head accuracy on the held-out games (every step counted once);
        "play": the mean score of `eval_games` games played by the network, and of the
        scripted expert and a random agent on the same games.

        Raises:
          ValueError: there is nothing to evaluate on.
        """
        pool = self.data.held_out
        if pool.num_episodes < 1:
            raise ValueError("ImitationTask: the held-out pool is empty")
        nll, slots, right, used = 0.0, 0, dict.fromkeys(HEADS, 0.0), dict.fromkeys(HEADS, 0.0)
        for first in range(0, pool.num_episodes, self.eval_batch_size):
            batch = pool.batch(range(first, min(first + self.eval_batch_size, pool.num_episodes)))
            batch = tf.nest.map_structure(tf.convert_to_tensor, batch)
            batch["observation"]["spatial"] = tf.cast(batch["observation"]["spatial"], tf.float32)
            outputs = agent.teacher_forced(batch["observation"], batch["action"])
            nll += float(tf.reduce_sum(negative_log_likelihood(outputs)))
            slots += int(np.prod(batch["reward"].shape))
            for key, (r, u) in head_counts(outputs, batch["action"]).items():
                right[key] += float(r)
                used[key] += float(u)
        held_out = {"loss": nll / slots}
        held_out.update({f"accuracy/{key}": right[key] / used[key] if used[key] else 0.0 for key in HEADS})
        results = {"held_out": held_out}
        if self.eval_games:
            seeds = [[self.data_seed, 1_000_000 + seed, i] for i in range(self.eval_games)]
            scores = play(self.game, seeds, agent.policy(self.eval_temperature, seed))
            results["play"] = {"score": float(np.mean(scores)), **self._reference_scores(seed, seeds)}
        return results

    def is_solved(self, results: dict[str, dict[str, float]]) -> bool:
        held_out = results["held_out"]
        return all(held_out[f"accuracy/{key}"] >= self.solved_accuracy for key in HEADS)

    def _reference_scores(self, seed: int, seeds: list) -> dict[str, float]:
        if seed not in self._baselines:
            rng = np.random.default_rng([self.data_seed, seed])
            self._baselines[seed] = {
                "expert_score": float(np.mean(play(self.game, seeds, expert_policy))),
                "random_score": float(np.mean(play(self.game, seeds, random_policy(rng)))),
            }
        return self._baselines[seed]


# --- playing ---------------------------------------------------------------------------------

# A policy maps the games (the first call of an episode batch has step 0) to their actions.
Policy = Callable[[Sequence[environment.Game], dict, int], list[dict[str, np.ndarray]]]


def expert_policy(games, observations, step):
    del observations, step
    return [game.expert_action() for game in games]


def random_policy(rng: np.random.Generator) -> Policy:
    def policy(games, observations, step):
        del observations, step
        return [game.random_action(rng) for game in games]

    return policy


def play(settings: environment.GameSettings, seeds: Sequence[Any], policy: Policy) -> np.ndarray:
    """Plays one game per seed with `policy`, all in step; returns each game's score (its total reward)."""
    games = [environment.Game(settings) for _ in seeds]
    observations = [game.reset(s) for game, s in zip(games, seeds)]
    step = 0
    while not all(game.done for game in games):
        stacked = tf.nest.map_structure(lambda *xs: np.stack(xs), *observations)
        actions = policy(games, stacked, step)
        for i, game in enumerate(games):
            if not game.done:
                observations[i], _, _ = game.step(actions[i])
        step += 1
    return np.array([game.score for game in games])


class Agent:
    """A network's teacher-forced unroll, its sampled step and its play, as `tf.function`s (evaluation, actors).

    Args:
      net: the network.
    """

    def __init__(self, net: network.AlphaStarNet):
        self.net = net

        def teacher_forced(observations, actions):
            state = net.initial_state(tf.shape(observations["available_action_types"])[1])
            return net.unroll(observations, state, actions)[0]

        def act(observation, state, seed, temperature):
            out, state = net(observation, state, seed=seed, temperature=temperature)
            return out.actions, out.log_probs, state

        self.teacher_forced = tf.function(teacher_forced, autograph=False)
        # One sampled step: (actions, their log-probabilities, the next state).
        self.act = tf.function(act, autograph=False)

    def policy(self, temperature: float, seed: int) -> Policy:
        """The network as a policy for `play`: its state carried from step to step, sampling noise from (seed, step)."""
        state = {}

        def policy(games, observations, step):
            if step == 0:
                state["core"] = self.net.initial_state(len(games))
            observations = dict(observations, spatial=observations["spatial"].astype(np.float32))
            actions, _, state["core"] = self.act(
                observations, state["core"], tf.constant([seed, step], tf.int32), tf.constant(temperature)
            )
            actions = {k: v.numpy() for k, v in actions.items()}
            return [{k: v[i] for k, v in actions.items()} for i in range(len(games))]

        return policy
