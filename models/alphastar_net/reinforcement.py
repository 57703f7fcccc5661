"""Actor-critic reinforcement learning on the game, as `train.py` drives it: actors, loss, metrics, evaluation.

AlphaStar's RL update (Vinyals et al., 2019, "Methods: reinforcement learning") on a
batch of the network's own games, learned from whole episodes (time-major [T, B]):

- actors (`Actor`, `ReinforcementTask.collect`) play `batch_size` games in step with
  the current weights, sampling each step in a `tf.function` at the actors'
  temperature, and record every head's behaviour log-probability log mu(a_t);
- the learner teacher-forces the network over the trajectories to get the target
  log-probabilities log pi(a_t), the values V(x_t), the entropies, and the KL to the
  frozen reference policy (the behaviour-cloned network), teacher-forced alike;
- policy gradient with V-trace advantages, split over the action type, the delay and
  the other arguments (each part weighted by its own importance ratio, as AlphaStar
  does); UPGO on the whole action with its ratio clipped at 1; the baseline regressed
  on TD(lambda) returns; an entropy bonus; a KL penalty towards the reference.

The loss of an argument an action type does not use is zero: its log-probability is 0
in both policies (so its ratio is 1 and its policy-gradient term vanishes), and its
entropy and KL are masked out by the argument table, as in behaviour cloning. Every
term is a sum over the [T, B] step slots divided by their number (padding after an
episode's end counts 0), so replicas holding parts of a batch add up to the whole.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from models.alphastar_net import distributions, environment, imitation, network, rl, specs

HEADS = specs.ACTION_KEYS
# The parts of the action whose V-trace importance ratios are taken apart (AlphaStar).
VTRACE_PARTS = {
    "action_type": ("action_type",),
    "delay": ("delay",),
    "arguments": ("queued", "selected_units", "target_unit", "target_location"),
}


def head_log_probs(log_probs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Per head, the log-probability of the whole argument [T, B] (selected units: the sum over picks)."""
    out = {}
    for key in HEADS:
        value = log_probs[key]
        out[key] = tf.reduce_sum(value, axis=-1) if key == "selected_units" else value
    return out


def used_choices(interface: specs.Interface, actions: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Per head, float32 masks of the choices the actions made: the argument table's, per pick for selected units."""
    used = specs.argument_masks(interface, actions["action_type"])
    masks = {key: tf.cast(used[key], tf.float32) for key in HEADS}
    # Each pick made (units and the end of selection); none where the argument is unused.
    masks["selected_units"] = tf.cast(actions["selected_units"] >= 0, tf.float32) * masks["selected_units"][..., None]
    return masks


def masked_entropy(logits: dict[str, tf.Tensor], used: dict[str, tf.Tensor]) -> tf.Tensor:
    """The policy's entropy over the choices the action made [T, B] (an unused argument adds nothing)."""
    total = 0.0
    for key in HEADS:
        entropy = distributions.entropy(logits[key]) * used[key]
        total += tf.reduce_sum(entropy, axis=-1) if key == "selected_units" else entropy
    return total


def masked_kl(reference_logits: dict, logits: dict, used: dict[str, tf.Tensor]) -> tf.Tensor:
    """KL(reference || policy) over the choices the action made [T, B], both teacher-forced with the same actions."""
    total = 0.0
    for key in HEADS:
        reference = tf.nn.log_softmax(tf.stop_gradient(reference_logits[key]))
        kl = tf.reduce_sum(tf.exp(reference) * (reference - tf.nn.log_softmax(logits[key])), axis=-1) * used[key]
        total += tf.reduce_sum(kl, axis=-1) if key == "selected_units" else kl
    return total


class ReinforcementTask:
    """Actor-critic learning on the game (module docstring).

    Args:
      game: the game's settings (the mini game by default).
      batch_size: games per step (the global batch), each one whole episode.
      temperature: the actors' sampling temperature; at 1 they sample the learner's
        policy, otherwise the importance ratios correct for the difference.
      discount: the reward discount per agent step (AlphaStar: 1, undiscounted).
      td_lambda: lambda of the baseline's TD(lambda) targets (AlphaStar: 0.8).
      vtrace_weight, upgo_weight: weights of the two policy-gradient terms.
      baseline_weight: weight of the baseline's squared error (AlphaStar: 10; the
        error is halved, 0.5 (V - G)^2).
      entropy_weight: weight of the entropy bonus (AlphaStar: 1e-4).
      kl_weight: weight of the KL penalty towards the reference policy (AlphaStar: 2e-3).
      clip_rho_threshold, clip_pg_rho_threshold: V-trace's truncations (IMPALA: 1).
      eval_games: games the network plays at each evaluation (0: none).
      eval_temperature: the sampling temperature of those games (AlphaStar plays at 0.8).
      solved_score: solved when the evaluation's mean score reaches this (None: never).
      data_seed: which games (the evaluation plays the games `ImitationTask` plays for
        the same data_seed and seed).

    Raises:
      ValueError: naming the setting that is out of range.
    """

    def __init__(
        self,
        game: environment.GameSettings | None = None,
        batch_size: int = 16,
        temperature: float = 1.0,
        discount: float = 1.0,
        td_lambda: float = 0.8,
        vtrace_weight: float = 1.0,
        upgo_weight: float = 1.0,
        baseline_weight: float = 10.0,
        entropy_weight: float = 1e-4,
        kl_weight: float = 2e-3,
        clip_rho_threshold: float = 1.0,
        clip_pg_rho_threshold: float = 1.0,
        eval_games: int = 32,
        eval_temperature: float = 0.8,
        solved_score: float | None = None,
        data_seed: int = 0,
    ):
        self.game = game or environment.GameSettings()
        self._interface = self.game.interface()
        for name, value, least in (("batch_size", batch_size, 1), ("eval_games", eval_games, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                what = "a positive" if least else "a non-negative"
                raise ValueError(f"ReinforcementTask: {name} must be {what} integer, got {value!r}")
        for name, value in (("temperature", temperature), ("eval_temperature", eval_temperature)):
            if not _is_number(value) or not value > 0:
                raise ValueError(f"ReinforcementTask: {name} must be a positive number, got {value!r}")
        for name, value in (("discount", discount), ("td_lambda", td_lambda)):
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"ReinforcementTask: {name} must be in [0, 1], got {value!r}")
        weights = dict(
            vtrace_weight=vtrace_weight,
            upgo_weight=upgo_weight,
            baseline_weight=baseline_weight,
            entropy_weight=entropy_weight,
            kl_weight=kl_weight,
        )
        for name, value in weights.items():
            if not _is_number(value) or not value >= 0 or not np.isfinite(value):
                raise ValueError(f"ReinforcementTask: {name} must be a non-negative number, got {value!r}")
        for name, value in (
            ("clip_rho_threshold", clip_rho_threshold),
            ("clip_pg_rho_threshold", clip_pg_rho_threshold),
        ):
            if not _is_number(value) or not value > 0:
                raise ValueError(f"ReinforcementTask: {name} must be a positive number, got {value!r}")
        if solved_score is not None and not _is_number(solved_score):
            raise ValueError(f"ReinforcementTask: solved_score must be a number or None, got {solved_score!r}")
        if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
            raise ValueError(f"ReinforcementTask: data_seed must be a non-negative integer, got {data_seed!r}")
        self._batch_size = int(batch_size)
        self.temperature = float(temperature)
        self.discount = float(discount)
        self.td_lambda = float(td_lambda)
        self.weights = {name: float(value) for name, value in weights.items()}
        self.clip_rho_threshold = float(clip_rho_threshold)
        self.clip_pg_rho_threshold = float(clip_pg_rho_threshold)
        self.eval_games = int(eval_games)
        self.eval_temperature = float(eval_temperature)
        self.solved_score = None if solved_score is None else float(solved_score)
        self.data_seed = int(data_seed)
        self._baselines: dict[int, dict[str, float]] = {}

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def interface(self) -> specs.Interface:
        return self._interface

    # --- acting ------------------------------------------------------------------------

    def game_seeds(self, seed: int, step: int) -> list[list[int]]:
        """The games of training step `step` (0-based): other games than the evaluation's."""
        first = step * self.batch_size
        return [[self.data_seed, 2_000_000 + seed, first + i] for i in range(self.batch_size)]

    def collect(self, actor: "Actor", seed: int, step: int) -> dict[str, Any]:
        """The trajectories of step `step`: `batch_size` whole games played by `actor`, a pure function of
        (the actor's weights, seed, step). NumPy, time-major [horizon, batch_size, ...]:

            observation, action (-1 on padding), reward, discount (0 on an episode's last
            step and on padding), mask (the episode's steps), behaviour_log_probs (per
            head, as the network's `log_probs`: 0 for unused arguments and on padding).
        """
        noise = int(np.random.default_rng([seed, step, 1]).integers(0, 2**31 - 1))
        return actor.play(self.game, self.game_seeds(seed, step), noise, self.temperature)

    # --- learning ----------------------------------------------------------------------

    def loss_and_metrics(
        self, model: network.AlphaStarNet, reference: network.AlphaStarNet, batch: dict
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The RL loss of a batch of trajectories (module docstring) and its parts.

        Args:
          model: the network learned.
          reference: the frozen reference policy (no gradient reaches it).
          batch: trajectories as `collect` makes them, as tensors.

        Returns:
          (loss, metrics): the scalar loss and a dict of scalars, "loss" among them.
        """
        observations, actions = batch["observation"], batch["action"]
        state = model.initial_state(tf.shape(batch["reward"])[1])
        outputs, _ = model.unroll(observations, state, actions)
        reference_outputs, _ = reference.unroll(
            observations, reference.initial_state(tf.shape(batch["reward"])[1]), actions
        )
        mask = tf.cast(batch["mask"], tf.float32)
        rewards, discounts = batch["reward"], batch["discount"] * self.discount
        values = outputs.baseline
        bootstrap = tf.zeros_like(values[0])  # every episode ends within the trajectory
        target = head_log_probs(outputs.log_probs)
        behaviour = head_log_probs(batch["behaviour_log_probs"])
        slots = tf.cast(tf.size(mask), tf.float32)

        def mean(x):
            return tf.reduce_sum(x * mask) / slots

        # V-trace, each part of the action with its own importance ratio.
        vtrace_loss = 0.0
        for keys in VTRACE_PARTS.values():
            log_pi = tf.add_n([target[k] for k in keys])
            log_rho = tf.stop_gradient(log_pi - tf.add_n([behaviour[k] for k in keys]))
            returns = rl.vtrace(
                log_rho,
                discounts,
                rewards,
                tf.stop_gradient(values),
                bootstrap,
                clip_rho_threshold=self.clip_rho_threshold,
                clip_pg_rho_threshold=self.clip_pg_rho_threshold,
            )
            vtrace_loss += mean(-returns.pg_advantages * log_pi)

        # UPGO on the whole action, its ratio clipped at 1.
        log_pi = tf.add_n(list(target.values()))
        log_rho = tf.stop_gradient(log_pi - tf.add_n(list(behaviour.values())))
        upgo = rl.upgo_returns(rewards, discounts, tf.stop_gradient(values), bootstrap)
        upgo_advantage = tf.stop_gradient(tf.minimum(1.0, tf.exp(log_rho)) * (upgo - values))
        upgo_loss = mean(-upgo_advantage * log_pi)

        # The baseline on TD(lambda) returns.
        value_targets = tf.stop_gradient(rl.lambda_returns(rewards, discounts, values, bootstrap, self.td_lambda))
        value_loss = mean(0.5 * tf.square(values - value_targets))

        used = used_choices(self.interface, actions)
        entropy = mean(masked_entropy(outputs.logits, used))
        kl = mean(masked_kl(reference_outputs.logits, outputs.logits, used))

        w = self.weights
        loss = (
            w["vtrace_weight"] * vtrace_loss
            + w["upgo_weight"] * upgo_loss
            + w["baseline_weight"] * value_loss
            - w["entropy_weight"] * entropy
            + w["kl_weight"] * kl
        )
        episodes = tf.cast(tf.shape(rewards)[1], tf.float32)
        steps = tf.maximum(tf.reduce_sum(mask), 1.0)
        metrics = {
            "loss": loss,
            "loss/vtrace": vtrace_loss,
            "loss/upgo": upgo_loss,
            "loss/value": value_loss,
            "entropy": entropy,
            "kl": kl,
            "return": tf.reduce_sum(rewards * mask) / episodes,
            "rho": tf.reduce_sum(tf.minimum(tf.exp(log_rho), 1e3) * mask) / steps,
        }
        return loss, metrics

    # --- evaluation --------------------------------------------------------------------

    def evaluate(self, agent: imitation.Agent, seed: int) -> dict[str, dict[str, float]]:
        """ "play": the mean score of `eval_games` games played by the network at `eval_temperature`,
        and of the scripted expert and a random agent on the same games (the games and
        the reference scores of `ImitationTask.evaluate` for the same data_seed and seed)."""
        if not self.eval_games:
            return {}
        seeds = [[self.data_seed, 1_000_000 + seed, i] for i in range(self.eval_games)]
        scores = imitation.play(self.game, seeds, agent.policy(self.eval_temperature, seed))
        return {"play": {"score": float(np.mean(scores)), **self._reference_scores(seed, seeds)}}

    def is_solved(self, results: dict[str, dict[str, float]]) -> bool:
        return self.solved_score is not None and "play" in results and results["play"]["score"] >= self.solved_score

    def _reference_scores(self, seed: int, seeds: list) -> dict[str, float]:
        if seed not in self._baselines:
            rng = np.random.default_rng([self.data_seed, seed])
            self._baselines[seed] = {
                "expert_score": float(np.mean(imitation.play(self.game, seeds, imitation.expert_policy))),
                "random_score": float(np.mean(imitation.play(self.game, seeds, imitation.random_policy(rng)))),
            }
        return self._baselines[seed]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class Actor:
    """Plays games with a network's sampling mode in a `tf.function`, recording the behaviour log-probabilities.

    Args:
      agent: the network's `imitation.Agent` (its current weights act; its sampled
        step is the one evaluation plays with, so one trace serves both).
    """

    def __init__(self, agent: imitation.Agent):
        self.net = agent.net
        self._act = agent.act

    def play(
        self, settings: environment.GameSettings, seeds: Sequence[Any], noise: int, temperature: float
    ) -> dict[str, Any]:
        """One whole game per seed, all in step; the trajectories as `ReinforcementTask.collect` describes them.

        The sampling noise of agent step t is the seed (noise, t).
        """
        horizon, batch = settings.horizon, len(seeds)
        games = [environment.Game(settings) for _ in seeds]
        observations = [game.reset(s) for game, s in zip(games, seeds)]
        state = self.net.initial_state(batch)
        steps = []
        for t in range(horizon):
            alive = np.array([not game.done for game in games])
            if not alive.any():
                break
            stacked = tf.nest.map_structure(lambda *xs: np.stack(xs), *observations)
            stacked["spatial"] = stacked["spatial"].astype(np.float32)
            actions, log_probs, state = self._act(
                stacked, state, tf.constant([noise, t], tf.int32), tf.constant(temperature, tf.float32)
            )
            actions = {k: v.numpy() for k, v in actions.items()}
            log_probs = {k: v.numpy() for k, v in log_probs.items()}
            rewards, continues = np.zeros(batch, np.float32), np.zeros(batch, np.float32)
            for i, game in enumerate(games):
                if alive[i]:
                    observations[i], reward, done = game.step({k: v[i] for k, v in actions.items()})
                    rewards[i], continues[i] = reward, float(not done)
            for k in HEADS:  # a finished game's step is padding
                shape = (-1,) + (1,) * (actions[k].ndim - 1)
                actions[k] = np.where(alive.reshape(shape), actions[k], specs.UNUSED).astype(np.int32)
                log_probs[k] = np.where(alive.reshape(shape), log_probs[k], 0.0).astype(np.float32)
            steps.append(
                {
                    "observation": stacked,
                    "action": actions,
                    "behaviour_log_probs": log_probs,
                    "reward": rewards,
                    "discount": continues,
                    "mask": alive,
                }
            )
        while len(steps) < horizon:  # padding: zeros, no action, no reward
            last = steps[-1]
            pad = tf.nest.map_structure(np.zeros_like, last)
            pad["action"] = {k: np.full_like(v, specs.UNUSED) for k, v in last["action"].items()}
            steps.append(pad)
        return tf.nest.map_structure(lambda *xs: np.stack(xs), *steps)
