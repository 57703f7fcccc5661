"""Expert demonstrations of the game as a `tf.data` pipeline of time-major trajectories.

A *trajectory* is one whole episode from its first step, padded to the game's horizon
(no episode has more steps than ticks), as a nest of arrays with leading axes [T, B]:

    {
      "observation": the observations, nested as the interface's observation spec,
      "action":      the actions taken, nested as the action spec (-1 on padding),
      "reward":      float32, the reward each action earned,
      "discount":    float32, 0 on an episode's last step and on padding, else 1,
      "mask":        bool, True on the episode's steps, False on padding,
    }

`Demonstrations` is a fixed pool of expert episodes, as a replay dataset is: episode j
is the expert's play from the game drawn from seed (data_seed, j). Each is played on
first use and kept (compactly: planes and masks as bytes). `dataset` deals them out:
the example at position p = step * batch_size + i of the run is the pool's episode
perm_e(p mod M), perm_e a permutation of the M episodes drawn from (seed, e) for epoch
e = p // M. So a batch is a pure function of (seed, step, example), a resumed run reads
the batches it would have read, and R replicas read exactly the rows of one global batch.
"""

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from models.alphastar_net import environment, specs

# Compact storage dtypes of the observation leaves (cast back to the spec's dtype in TF).
_STORED = {"spatial": np.uint8}


def play(game: environment.Game, seed: Any, policy: str = "expert", rng: np.random.Generator | None = None) -> dict:
    """Plays one episode from `game.reset(seed)`; returns its unpadded trajectory (leading axis: steps).

    Args:
      game: the game to play.
      seed: the episode's seed.
      policy: "expert" or "random" (the latter draws from `rng`).
      rng: the random policy's generator.
    """
    observation = game.reset(seed)
    observations, actions, rewards = [], [], []
    while not game.done:
        action = game.expert_action() if policy == "expert" else game.random_action(rng)
        observations.append(observation)
        actions.append(action)
        observation, reward, _ = game.step(action)
        rewards.append(reward)
    stack = lambda *xs: np.stack(xs)  # noqa: E731
    trajectory = {
        "observation": tf.nest.map_structure(stack, *observations),
        "action": tf.nest.map_structure(stack, *actions),
        "reward": np.asarray(rewards, np.float32),
    }
    trajectory["observation"]["spatial"] = trajectory["observation"]["spatial"].astype(np.uint8)
    return trajectory


def pad_and_batch(trajectories: Sequence[dict], length: int) -> dict:
    """Stacks unpadded trajectories into one time-major batch [length, B, ...] (see the module docstring)."""

    def pad(x: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full((length, *x.shape[1:]), fill, x.dtype)
        out[: len(x)] = x
        return out

    columns = []
    for t in trajectories:
        steps = len(t["reward"])
        mask = np.arange(length) < steps
        discount = (np.arange(length) < steps - 1).astype(np.float32)
        columns.append(
            {
                "observation": tf.nest.map_structure(lambda x: pad(x, 0), t["observation"]),
                "action": tf.nest.map_structure(lambda x: pad(x, specs.UNUSED), t["action"]),
                "reward": pad(t["reward"], 0),
                "discount": discount,
                "mask": mask,
            }
        )
    return tf.nest.map_structure(lambda *xs: np.stack(xs, axis=1), *columns)


def trajectory_spec(interface: specs.Interface, length: int, batch: int | None) -> dict:
    """The `tf.TensorSpec`s of a batch of trajectories [length, batch, ...] as the pipeline yields it."""
    return {
        "observation": specs.with_batch(interface.observation_spec(), length, batch),
        "action": specs.with_batch(interface.action_spec(), length, batch),
        "reward": tf.TensorSpec([length, batch], tf.float32),
        "discount": tf.TensorSpec([length, batch], tf.float32),
        "mask": tf.TensorSpec([length, batch], tf.bool),
    }


class Demonstrations:
    """A pool of `num_episodes` expert episodes of a game; episode j is played from seed (data_seed, j).

    Thread-safe: tf.data may call `episode` from several threads.

    Args:
      settings: the game.
      num_episodes: the pool's size M.
      data_seed: which pool (different seeds give disjoint games).
    """

    def __init__(self, settings: environment.GameSettings, num_episodes: int, data_seed: int = 0):
        if isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)) or num_episodes < 1:
            raise ValueError(f"Demonstrations: num_episodes must be a positive integer, got {num_episodes!r}")
        self.settings = settings
        self.num_episodes = int(num_episodes)
        self.data_seed = int(data_seed)
        self._episodes: dict[int, dict] = {}
        self._games = threading.local()
        self._lock = threading.Lock()

    def episode(self, index: int) -> dict:
        """The unpadded trajectory of episode `index` (played now if not yet)."""
        episode = self._episodes.get(index)
        if episode is None:
            if not 0 <= index < self.num_episodes:
                raise IndexError(f"Demonstrations: episode {index} out of range [0, {self.num_episodes})")
            game = getattr(self._games, "game", None)
            if game is None:
                game = self._games.game = environment.Game(self.settings)
            episode = play(game, [self.data_seed, index])
            with self._lock:
                self._episodes[index] = episode
        return episode

    def batch(self, indices: Sequence[int]) -> dict:
        """The episodes at `indices`, padded and stacked time-major [horizon, len(indices), ...]."""
        return pad_and_batch([self.episode(int(i)) for i in indices], self.settings.horizon)


class ExpertData:
    """The training and held-out demonstrations, dealt out as `tf.data` batches (module docstring).

    Args:
      settings: the game.
      batch_size: the global batch size (episodes per step).
      num_episodes: the training pool's size.
      num_held_out: the held-out pool's size (a disjoint set of games).
      data_seed: which pools.
    """

    def __init__(
        self,
        settings: environment.GameSettings,
        batch_size: int,
        num_episodes: int = 2048,
        num_held_out: int = 256,
        data_seed: int = 0,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"ExpertData: batch_size must be a positive integer, got {batch_size!r}")
        self.settings = settings
        self.interface = settings.interface()
        self.batch_size = int(batch_size)
        self.train = Demonstrations(settings, num_episodes, 2 * data_seed)
        self.held_out = Demonstrations(settings, num_held_out, 2 * data_seed + 1)
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    def episode_indices(self, seed: int, step: int, first: int, last: int) -> np.ndarray:
        """The training episodes of examples [first, last) of the global batch of `step`."""
        count = self.train.num_episodes
        positions = step * self.batch_size + np.arange(first, last)
        out = np.empty(len(positions), np.int64)
        for k, p in enumerate(positions):
            epoch = int(p // count)
            perm = self._permutations.get((seed, epoch))
            if perm is None:
                perm = np.random.default_rng([seed, epoch]).permutation(count)
                if len(self._permutations) > 8:
                    self._permutations.clear()
                self._permutations[(seed, epoch)] = perm
            out[k] = perm[p % count]
        return out

    def batch(self, seed: int, step: int, first: int = 0, last: int | None = None) -> dict:
        """Examples [first, last) of the global training batch of `step`, as NumPy [horizon, last - first, ...]."""
        last = self.batch_size if last is None else last
        return self.train.batch(self.episode_indices(seed, step, first, last))

    def dataset(self, seed: int, start_step: int, context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """This input pipeline's per-replica training batches for steps start_step, start_step + 1, ...

        Replica r of R gets examples [r B / R, (r + 1) B / R) of each global batch, in the
        order `strategy.distribute_datasets_from_function` deals them: step by step, one
        element per replica of this pipeline.

        Raises:
          ValueError: the batch size does not split evenly over the replicas.
        """
        context = context or tf.distribute.InputContext()
        replicas, pipelines = context.num_replicas_in_sync, context.num_input_pipelines
        if self.batch_size % replicas or replicas % pipelines:
            raise ValueError(f"ExpertData: batch size {self.batch_size} does not split over {replicas} replicas")
        size, local = self.batch_size // replicas, replicas // pipelines
        first_replica = context.input_pipeline_id * local
        spec = trajectory_spec(self.interface, self.settings.horizon, size)
        flat_spec = tf.nest.flatten(spec)
        stored = self._stored_dtypes(spec)

        def element(index: np.ndarray) -> list[np.ndarray]:
            index = int(index)
            step, replica = index // local, first_replica + index % local
            batch = self.batch(seed, step, replica * size, (replica + 1) * size)
            return [np.asarray(x, d) for x, d in zip(tf.nest.flatten(batch), stored)]

        def load(index: tf.Tensor) -> dict:
            flat = tf.numpy_function(element, [index], [tf.as_dtype(d) for d in stored], stateful=False)
            flat = [tf.ensure_shape(tf.cast(x, s.dtype), s.shape) for x, s in zip(flat, flat_spec)]
            return tf.nest.pack_sequence_as(spec, flat)

        first = tf.constant(start_step * local, tf.int64)
        return tf.data.Dataset.range(first, tf.int64.max).map(load).prefetch(2)

    @staticmethod
    def _stored_dtypes(spec: dict) -> list[np.dtype]:
        """The NumPy dtype each flattened leaf is produced in."""
        stored = tf.nest.map_structure(lambda s: s.dtype.as_numpy_dtype, spec)
        stored["observation"]["spatial"] = _STORED["spatial"]
        return tf.nest.flatten(stored)
