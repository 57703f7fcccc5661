"""The game: observations fit the spec, episodes are pure functions of the seed, the expert is worth cloning."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from models.alphastar_net import environment, specs

SETTINGS = environment.GameSettings()


def _check_observation(observation, interface):
    for path_spec, value in zip(
        tf.nest.flatten(interface.observation_spec()), tf.nest.flatten(observation, expand_composites=False)
    ):
        assert value.shape == tuple(path_spec.shape), path_spec.name
        assert value.dtype == path_spec.dtype.as_numpy_dtype, path_spec.name
    tf.nest.assert_same_structure(observation, interface.observation_spec())
    mask = observation["entities"]["mask"]
    positions = observation["entities"]["positions"][mask]
    assert np.all((positions >= 0) & (positions < interface.map_size))
    # Padding rows are all zeros; every real entity has one type and one owner.
    assert not observation["entities"]["features"][~mask].any()
    types = observation["entities"]["features"][mask][:, : len(environment.ENTITY_TYPES)]
    np.testing.assert_array_equal(types.sum(-1), 1)
    assert observation["available_action_types"][environment.NO_OP]


def test_observations_fit_the_spec_and_expert_actions_fit_the_table():
    game = environment.Game(SETTINGS)
    interface = game.interface
    action_spec = interface.action_spec()
    for episode in range(3):
        observation = game.reset([1, episode])
        while not game.done:
            _check_observation(observation, interface)
            action = game.expert_action()
            assert set(action) == set(action_spec)
            for key, spec in action_spec.items():
                assert action[key].shape == tuple(spec.shape) and action[key].dtype == np.int32, key
            action_type = int(action["action_type"])
            assert observation["available_action_types"][action_type]
            uses = dict(zip(specs.ARGUMENTS, environment.ARGUMENT_TABLE[action_type]))
            for name in ("delay", "queued", "target_unit", "target_location"):
                assert (action[name] >= 0) == uses[name], name
            picks = list(action["selected_units"])
            if uses["selected_units"]:
                end = picks.index(interface.num_entities) if interface.num_entities in picks else len(picks)
                assert 0 < end and len(set(picks[:end])) == end
                assert all(observation["entities"]["mask"][p] for p in picks[:end])
            else:
                assert picks == [-1] * interface.max_selected
            if uses["target_location"]:
                assert observation["location_mask"].reshape(-1)[action["target_location"]]
            observation, reward, done = game.step(action)
            assert game.last_command_succeeded, f"the expert's {environment.ACTION_TYPES[action_type]} failed"


def test_an_episode_is_a_pure_function_of_its_seed():
    def episode(seed):
        game = environment.Game(SETTINGS)
        observations = [game.reset(seed)]
        rewards = []
        while not game.done:
            observation, reward, _ = game.step(game.expert_action())
            observations.append(observation)
            rewards.append(reward)
        return observations, rewards

    a, b, c = episode([4, 2]), episode([4, 2]), episode([4, 3])
    assert a[1] == b[1]
    for x, y in zip(tf.nest.flatten(a[0]), tf.nest.flatten(b[0])):
        np.testing.assert_array_equal(x, y)
    assert a[1] != c[1] or any(
        not np.array_equal(x, y) for x, y in zip(tf.nest.flatten(a[0][0]), tf.nest.flatten(c[0][0]))
    )


def test_the_expert_beats_a_random_agent_and_waiting_less_beats_the_expert():
    """The scores the README compares the cloned agent with, on 40 games each."""
    game = environment.Game(SETTINGS)
    scores = {"expert": [], "random": [], "no_wait": []}
    for episode in range(40):
        rng = np.random.default_rng(episode)
        for policy in scores:
            game.reset([9, episode])
            while not game.done:
                if policy == "random":
                    action = game.random_action(rng)
                else:
                    action = game.expert_action()
                    if policy == "no_wait":
                        action["delay"] = np.array(0, np.int32)
                game.step(action)
            scores[policy].append(game.score)
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert mean["expert"] > mean["random"] + 10, mean
    assert mean["no_wait"] > mean["expert"] + 0.8, mean


def test_commands_follow_the_rules():
    game = environment.Game(SETTINGS)
    game.reset(5)
    # A harvest pointing at a worker instead of a mineral fails and changes nothing.
    action = game.expert_action()
    assert int(action["action_type"]) == environment.HARVEST
    wrong = dict(action, target_unit=action["selected_units"][0])
    game.step(wrong)
    assert not game.last_command_succeeded
    game.step(action)
    assert game.last_command_succeeded
    # Train: an unqueued command to a busy base fails, a queued one succeeds.
    game.stock = 100
    base = game._slot(game.base)
    train = game._action(environment.TRAIN, 0, 0, [base])
    game.step(train)
    assert game.last_command_succeeded and game.base.queue
    game.step(train)
    assert not game.last_command_succeeded
    game.step(game._action(environment.TRAIN, 0, 1, [base]))
    assert game.last_command_succeeded


def test_bad_actions_and_settings_are_explained():
    game = environment.Game(SETTINGS)
    with pytest.raises(RuntimeError, match="call reset first"):
        game.step(game.no_op())
    game.reset(0)
    with pytest.raises(ValueError, match="action type 2 is not available"):
        game.step(game._action(environment.ATTACK, 0, 0, [1], target_unit=1))
    with pytest.raises(ValueError, match="delay must be in \\[0, 4\\)"):
        game.step(game.no_op(4))
    with pytest.raises(ValueError, match="lacks \\['target_location'\\]"):
        game.step({k: v for k, v in game.no_op().items() if k != "target_location"})
    with pytest.raises(ValueError, match="max_entities 8 is too small"):
        dataclasses.replace(SETTINGS, max_entities=8)
    with pytest.raises(ValueError, match="must divide map_size"):
        dataclasses.replace(SETTINGS, spatial_size=5)


def test_the_full_sized_game_fits_alphastar_s_interface():
    settings = environment.full_settings()
    interface = settings.interface()
    assert (interface.num_entities, interface.spatial_size, interface.map_size) == (512, 128, 256)
    assert (interface.max_selected, interface.num_delays) == (64, 128)
    game = environment.Game(settings)
    observation = game.reset(0)
    _check_observation(observation, interface)
    # Entities land on the half-resolution planes (two may share a plane cell).
    assert 0 < observation["spatial"].sum() <= observation["entities"]["mask"].sum()
