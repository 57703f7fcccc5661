"""The demonstrations pipeline: spec-shaped trajectories, a pure function of (seed, step, example)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from models.alphastar_net import data, environment, specs

# A short game keeps the episodes cheap to play.
SETTINGS = dataclasses.replace(environment.GameSettings(), horizon=10)


def _take(dataset, count):
    return [tf.nest.map_structure(lambda x: x.numpy(), e) for e in dataset.take(count)]


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)))


@pytest.fixture(scope="module")
def expert():
    return data.ExpertData(SETTINGS, batch_size=4, num_episodes=6, num_held_out=2)


def test_batches_fit_the_trajectory_spec_and_mark_padding(expert):
    batch = _take(expert.dataset(seed=0, start_step=0), 1)[0]
    spec = data.trajectory_spec(expert.interface, SETTINGS.horizon, 4)
    tf.nest.assert_same_structure(batch, spec)
    for x, s in zip(tf.nest.flatten(batch), tf.nest.flatten(spec)):
        assert x.shape == tuple(s.shape) and x.dtype == s.dtype.as_numpy_dtype, s
    mask, discount = batch["mask"], batch["discount"]
    lengths = mask.sum(0)
    assert np.all(lengths >= 1)
    for b, length in enumerate(lengths):
        assert mask[:length, b].all() and not mask[length:, b].any()
        np.testing.assert_array_equal(discount[:, b], np.arange(SETTINGS.horizon) < length - 1)
        assert np.all(batch["action"]["action_type"][length:, b] == specs.UNUSED)
        assert np.all(batch["action"]["action_type"][:length, b] >= 0)
        assert not batch["observation"]["entities"]["mask"][length:, b].any()


def test_a_batch_is_a_pure_function_of_seed_and_step(expert):
    first = _take(expert.dataset(seed=3, start_step=0), 4)
    # Another pipeline (fresh pool, played again) resumed at step 2 reads what the first read.
    again = data.ExpertData(SETTINGS, batch_size=4, num_episodes=6, num_held_out=2)
    resumed = _take(again.dataset(seed=3, start_step=2), 2)
    assert _equal(resumed, first[2:])
    other = _take(expert.dataset(seed=4, start_step=0), 1)
    assert not _equal(other[0], first[0])


def test_every_episode_is_used_once_per_epoch(expert):
    indices = [expert.episode_indices(seed=1, step=s, first=0, last=4) for s in range(3)]
    flat = np.concatenate(indices)  # 12 examples: two epochs of the 6 episodes
    assert sorted(flat[:6]) == list(range(6)) and sorted(flat[6:]) == list(range(6))


def test_replicas_read_the_rows_of_one_global_batch(expert):
    whole = _take(expert.dataset(seed=5, start_step=1), 2)
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    split = _take(expert.dataset(seed=5, start_step=1, context=context), 4)
    for step in range(2):
        joined = tf.nest.map_structure(
            lambda a, b: np.concatenate([a, b], axis=1), split[2 * step], split[2 * step + 1]
        )
        assert _equal(joined, whole[step])
    # The second of two pipelines (one replica each) reads the second half.
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    second = _take(expert.dataset(seed=5, start_step=1, context=context), 1)[0]
    assert _equal(second, split[1])
    with pytest.raises(ValueError, match="does not split over 3 replicas"):
        expert.dataset(0, 0, tf.distribute.InputContext(1, 0, 3))


def test_the_held_out_pool_is_other_games(expert):
    train = expert.train.episode(0)["observation"]["entities"]["positions"][0]
    held_out = expert.held_out.episode(0)["observation"]["entities"]["positions"][0]
    assert not np.array_equal(train, held_out)
    with pytest.raises(IndexError, match="out of range"):
        expert.held_out.episode(2)
    with pytest.raises(ValueError, match="num_episodes must be a positive integer"):
        data.Demonstrations(SETTINGS, 0)
