"""The agent network: spec-shaped outputs, the masks, sampling vs teacher forcing, unrolls, sizes, errors.

Eager, `tf.function` and XLA agreement (in both modes) is checked by the conformance
entry `AlphaStarNet` in test_conformance.py.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from models.alphastar_net import environment, network, specs

INTERFACE = specs.Interface(
    num_entities=6,
    entity_features=3,
    spatial_size=8,
    spatial_channels=2,
    map_size=8,
    scalar_features=(("stats", 2),),
    argument_table=(
        (True, False, False, False, False),
        (True, True, True, True, False),
        (True, False, True, False, True),
        (False, False, False, True, False),
    ),
    num_delays=3,
    max_selected=4,
)
SEED = tf.constant([5, 7], tf.int32)


@pytest.fixture(scope="module")
def net():
    # Two LSTM layers, two blocks down and two up, to exercise the stacking.
    config = dataclasses.replace(
        network.tiny(), lstm_layers=2, downsample_channels=(4, 8), upsample_channels=(4, 1), autoregressive_size=16
    )
    model = network.AlphaStarNet(INTERFACE, config)
    observation = specs.random_observation(INTERFACE, np.random.RandomState(0), 2)
    model(observation, model.initial_state(2), seed=SEED)
    return model


def _sample(net, observation, seed=SEED, temperature=1.0):
    batch = len(observation["available_action_types"])
    return net(observation, net.initial_state(batch), seed=seed, temperature=temperature)[0]


def test_sampled_actions_match_the_action_spec_and_respect_every_mask(net):
    rng = np.random.RandomState(1)
    observation = specs.random_observation(INTERFACE, rng, 64)
    # Few real entities in some rows, so that selections often run out of units.
    observation["entities"]["mask"][:16, 2:] = False
    n, k = INTERFACE.num_entities, INTERFACE.max_selected
    table = INTERFACE.table()
    for seed in range(3):
        # A high temperature spreads the samples over every allowed choice.
        out = _sample(net, observation, tf.constant([seed, 1]), temperature=3.0)
        actions = {key: value.numpy() for key, value in out.actions.items()}
        for key, spec in INTERFACE.action_spec().items():
            assert out.actions[key].dtype == spec.dtype
            assert out.actions[key].shape == [64, *spec.shape], key
            assert out.log_probs[key].shape == [64, *spec.shape], key
            assert out.logits[key].shape[:-1] == [64, *spec.shape], key
            assert out.logits[key].shape[-1] == INTERFACE.num_choices()[key], key
        for b in range(64):
            action_type = actions["action_type"][b]
            assert observation["available_action_types"][b, action_type], "an unavailable action type was sampled"
            uses = dict(zip(specs.ARGUMENTS, table[action_type]))
            real = set(np.flatnonzero(observation["entities"]["mask"][b]))
            for name in ("delay", "queued", "target_unit", "target_location"):
                assert (actions[name][b] >= 0) == uses[name], (name, action_type)
                if not uses[name]:
                    assert out.log_probs[name][b] == 0.0
            if uses["target_unit"]:
                assert actions["target_unit"][b] in real
            if uses["target_location"]:
                assert observation["location_mask"][b].reshape(-1)[actions["target_location"][b]]
            picks = list(actions["selected_units"][b])
            if not uses["selected_units"]:
                assert picks == [-1] * k
                continue
            assert picks[0] != n, "end-of-selection was the first pick"
            end = picks.index(n) if n in picks else picks.index(-1) if -1 in picks else k
            units = picks[:end]
            assert len(set(units)) == len(units), f"a unit was picked twice: {picks}"
            assert set(units) <= real, f"a padded entity was picked: {picks}"
            if n in picks:
                assert picks[end + 1 :] == [-1] * (k - end - 1)
            else:
                # Without end-of-selection, the selection stopped only at max_selected.
                assert end == k
            # Every pick after the end has log-probability 0.
            np.testing.assert_array_equal(out.log_probs["selected_units"][b, end + 1 :], 0.0)


def test_selection_ends_when_every_real_unit_is_picked(net):
    observation = specs.random_observation(INTERFACE, np.random.RandomState(2), 32)
    observation["entities"]["mask"][:] = False
    observation["entities"]["mask"][:, :2] = True
    observation["available_action_types"][:] = [False, True, False, False]
    picks = _sample(net, observation, temperature=3.0).actions["selected_units"].numpy()
    n = INTERFACE.num_entities
    for row in picks:
        assert sorted(row[:2]) in ([0, 1], [0, n], [1, n]) or list(row[:3]) in ([0, 1, n], [1, 0, n])
        end = list(row).index(n)
        assert end <= 2


def test_teacher_forced_log_probs_equal_those_computed_while_sampling(net):
    observation = specs.random_observation(INTERFACE, np.random.RandomState(3), 32)
    state = net.initial_state(32)
    sampled, _ = net(observation, state, seed=SEED, temperature=0.8)
    forced, _ = net(observation, state, sampled.actions, temperature=0.8)
    for key in specs.ACTION_KEYS:
        np.testing.assert_array_equal(forced.actions[key], sampled.actions[key])
        np.testing.assert_allclose(forced.log_probs[key], sampled.log_probs[key], rtol=1e-6, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(forced.logits[key], sampled.logits[key], rtol=1e-6, atol=1e-6, err_msg=key)
    # The log-probabilities are those of the logits the choices were drawn from.
    logits = sampled.logits["action_type"]
    expected = tf.gather(tf.nn.log_softmax(logits), sampled.actions["action_type"], batch_dims=1)
    np.testing.assert_allclose(sampled.log_probs["action_type"], expected, rtol=1e-6)


def test_teacher_forcing_follows_the_given_actions_and_ignores_unused_arguments(net):
    rng = np.random.RandomState(4)
    observation = specs.random_observation(INTERFACE, rng, 16)
    actions = specs.random_actions(INTERFACE, observation, rng)
    out, _ = net(observation, net.initial_state(16), actions)
    for key in specs.ACTION_KEYS:
        np.testing.assert_array_equal(out.actions[key], actions[key], err_msg=key)
    used = {k: v.numpy() for k, v in specs.argument_masks(INTERFACE, actions["action_type"]).items()}
    for key in ("delay", "queued", "target_unit", "target_location"):
        assert np.all(out.log_probs[key].numpy()[~used[key]] == 0.0)
        assert np.all(out.log_probs[key].numpy()[used[key]] < 0.0)
    # Garbage in an unused argument changes nothing.
    noisy = dict(actions)
    noisy["target_location"] = np.where(used["target_location"], actions["target_location"], 3).astype(np.int32)
    again, _ = net(observation, net.initial_state(16), noisy)
    for key in specs.ACTION_KEYS:
        np.testing.assert_array_equal(again.log_probs[key], out.log_probs[key])


def test_unroll_equals_one_step_at_a_time(net):
    rng = np.random.RandomState(5)
    steps, batch = 3, 2
    observations = [specs.random_observation(INTERFACE, rng, batch) for _ in range(steps)]
    actions = [specs.random_actions(INTERFACE, o, rng) for o in observations]
    state = net.initial_state(batch)
    stepped = []
    for o, a in zip(observations, actions):
        out, state = net(o, state, a)
        stepped.append(out)
    stack = lambda *xs: np.stack(xs)  # noqa: E731
    unrolled, final = net.unroll(
        tf.nest.map_structure(stack, *observations), net.initial_state(batch), tf.nest.map_structure(stack, *actions)
    )
    expected = tf.nest.map_structure(stack, *stepped)
    for got, want in zip(tf.nest.flatten(unrolled), tf.nest.flatten(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(tf.nest.flatten(final), tf.nest.flatten(state)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_same_seed_gives_the_same_actions_and_another_seed_others(net):
    observation = specs.random_observation(INTERFACE, np.random.RandomState(6), 32)
    a = _sample(net, observation, tf.constant([1, 2]), temperature=3.0).actions
    b = _sample(net, observation, tf.constant([1, 2]), temperature=3.0).actions
    c = _sample(net, observation, tf.constant([1, 3]), temperature=3.0).actions
    for key in specs.ACTION_KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[key], c[key]) for key in specs.ACTION_KEYS)


def test_gradients_reach_every_variable_but_the_unused_paths(net):
    rng = np.random.RandomState(7)
    observation = specs.random_observation(INTERFACE, rng, 8)
    actions = specs.random_actions(INTERFACE, observation, rng)
    with tf.GradientTape() as tape:
        out, _ = net(observation, net.initial_state(8), actions)
        loss = -tf.add_n([tf.reduce_sum(x) for x in tf.nest.flatten(out.log_probs)]) + tf.reduce_sum(out.baseline)
    grads = tape.gradient(loss, net.trainable_variables)
    missing = [v.name for v, g in zip(net.trainable_variables, grads) if g is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_parameter_counts_of_the_mini_configuration():
    # The figures in models/alphastar_net/README.md; the full configuration's are in
    # test_full_configuration_parameter_count (slow).
    settings = environment.GameSettings()
    model = network.AlphaStarNet(settings.interface(), network.mini())
    observation = specs.random_observation(settings.interface(), np.random.RandomState(0), 1)
    model(observation, model.initial_state(1), seed=SEED)
    assert network.count_parameters(model) == 370_898
    assert network.policy_parameters(model) == 364_625


@pytest.mark.slow
def test_full_configuration_parameter_count():
    settings = environment.full_settings()
    model = network.AlphaStarNet(settings.interface(), network.full())
    observation = specs.random_observation(settings.interface(), np.random.RandomState(0), 1)
    out, _ = model(observation, model.initial_state(1), seed=SEED)
    assert out.logits["target_location"].shape == [1, 256 * 256]
    assert network.count_parameters(model) == 25_078_654
    assert network.policy_parameters(model) == 24_914_045


def test_a_config_that_does_not_fit_the_interface_is_explained():
    with pytest.raises(ValueError, match="upsamples the 4 x 4 map skips 2 times"):
        network.AlphaStarNet(INTERFACE, dataclasses.replace(network.tiny(), upsample_channels=(2, 1)))
    with pytest.raises(ValueError, match="divisible by 2"):
        network.AlphaStarNet(dataclasses.replace(INTERFACE, spatial_size=5), network.tiny())
    with pytest.raises(ValueError, match="multiple of the map skips' 4 x 4 cells"):
        network.AlphaStarNet(INTERFACE, dataclasses.replace(network.tiny(), autoregressive_size=6))
    with pytest.raises(ValueError, match="scalar_context names \\['race'\\]"):
        network.AlphaStarNet(INTERFACE, dataclasses.replace(network.tiny(), scalar_context=("race",)))


def test_bad_observations_and_actions_are_explained(net):
    rng = np.random.RandomState(8)
    observation = specs.random_observation(INTERFACE, rng, 2)
    state = net.initial_state(2)
    missing = dict(observation)
    del missing["location_mask"]
    with pytest.raises(ValueError, match="does not have the structure"):
        net(missing, state, seed=SEED)
    wrong = tf.nest.map_structure(lambda x: x, observation)
    wrong["entities"]["features"] = wrong["entities"]["features"][:, :, :2]
    with pytest.raises(ValueError, match="entities/features must be \\[B, ...\\] with trailing shape \\[6, 3\\]"):
        net(wrong, state, seed=SEED)
    half = tf.nest.map_structure(lambda x: x, observation)
    half["spatial"] = half["spatial"].astype(np.float16)
    with pytest.raises(TypeError, match="spatial must be float32, got float16"):
        net(half, state, seed=SEED)
    actions = specs.random_actions(INTERFACE, observation, rng)
    actions["selected_units"] = actions["selected_units"][:, :2]
    with pytest.raises(ValueError, match="actions selected_units"):
        net(observation, state, actions)
    with pytest.raises(ValueError, match="\\[T, B, ...\\]"):
        net.unroll(observation, state)


def test_interface_validation():
    with pytest.raises(ValueError, match="num_delays must be a positive integer"):
        dataclasses.replace(INTERFACE, num_delays=0)
    with pytest.raises(ValueError, match="argument_table must be bools"):
        dataclasses.replace(INTERFACE, argument_table=((True, False),))
    with pytest.raises(ValueError, match="3 names for 4 action types"):
        dataclasses.replace(INTERFACE, action_type_names=("a", "b", "c"))
    masks = specs.argument_masks(INTERFACE, tf.constant([0, 1, 2, 3, -1]))
    np.testing.assert_array_equal(masks["action_type"], [True, True, True, True, False])
    np.testing.assert_array_equal(masks["selected_units"], [False, True, True, False, False])
    np.testing.assert_array_equal(masks["target_location"], [False, False, True, False, False])
