"""Dropout: identity paths against Sonnet, statistics, seeding, checkpoints, replicas, errors."""

import copy

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import outputs_and_input_grads


def mask(d, x, **kwargs):
    return d(x, True, **kwargs).numpy() != 0


@pytest.mark.parametrize("rate, is_training", [(0.5, False), (0.0, True), (0.0, False)])
def test_identity_paths_match_sonnet(rate, is_training, rng):
    x = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))
    ours, theirs = core.Dropout(rate, seed=1), snt.Dropout(rate)
    ours_out, ours_grad = outputs_and_input_grads(lambda v: ours(v, is_training), [x])
    their_out, their_grad = outputs_and_input_grads(lambda v: theirs(v, is_training), [x])
    np.testing.assert_array_equal(ours_out[0], x.numpy())
    np.testing.assert_array_equal(ours_out[0], their_out[0])
    np.testing.assert_array_equal(ours_grad[0], their_grad[0])
    assert ours(x, is_training) is x  # no op at all


def test_training_statistics_match_sonnet():
    rate, n = 0.3, 100 * 100
    x = tf.ones([100, 100])
    ours, theirs = core.Dropout(rate, seed=3)(x, True).numpy(), snt.Dropout(rate)(x, True).numpy()
    for out in (ours, theirs):
        # Kept values are scaled by 1 / (1 - rate), the rest are zero.
        assert set(np.unique(out)) <= {0.0, np.float32(1.0) * np.float32(1 / (1 - rate))}
        keep = np.mean(out != 0)
        assert abs(keep - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / n)  # 4 sigma
    assert ours.mean() == pytest.approx(1.0, abs=4 * np.sqrt(rate / (1 - rate) / n))


def test_kept_values_are_scaled_and_gradient_follows_mask(rng):
    x = tf.constant(rng.normal(size=(4, 5)))
    d = core.Dropout(0.25, seed=0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = d(x, True)
    kept = y.numpy() != 0
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / 0.75, rtol=1e-15)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), kept / 0.75, rtol=1e-15)
    # Dropped NaNs become zeros rather than NaN * 0.
    out = core.Dropout(0.5, seed=0)(tf.fill([50], np.nan), True).numpy()
    assert 0 < np.sum(out == 0) < 50 and np.sum(out == 0) + np.sum(np.isnan(out)) == 50


def test_same_seed_same_masks_and_fresh_mask_each_call():
    x = tf.ones([8, 8])
    a, b = core.Dropout(0.5, seed=7), core.Dropout(0.5, seed=7)
    first, second = mask(a, x), mask(a, x)
    np.testing.assert_array_equal(first, mask(b, x))
    np.testing.assert_array_equal(second, mask(b, x))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, mask(core.Dropout(0.5, seed=8), x))


def test_eager_function_and_xla_draw_the_same_mask():
    x = tf.ones([6, 7])
    d = core.Dropout(0.5, seed=2)
    d(x, False)  # build
    start = d.rng_state.numpy()
    masks = []
    for fn in (
        lambda v: d(v, True),
        tf.function(lambda v: d(v, True)),
        tf.function(lambda v: d(v, True), jit_compile=True),
    ):
        d.rng_state.assign(start)
        masks.append(fn(x).numpy())
        assert not np.array_equal(d.rng_state.numpy(), start)  # the state moved on
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])


def test_set_seed_makes_unseeded_modules_reproducible():
    x = tf.ones([10])
    runs = []
    for _ in range(2):
        core.utils.set_seed(1234)
        d = core.Dropout(0.5)
        runs.append([mask(d, x), mask(d, x)])
    np.testing.assert_array_equal(runs[0], runs[1])
    core.utils.set_seed(1235)
    assert not np.array_equal(mask(core.Dropout(0.5), x), runs[0][0])


def test_checkpoint_restore_continues_the_stream(tmp_path):
    x = tf.ones([16])
    d = core.Dropout(0.5, seed=5)
    mask(d, x)
    path = tf.train.Checkpoint(module=d).write(str(tmp_path / "ckpt"))
    expected = [mask(d, x), mask(d, x)]

    restored = core.Dropout(0.5, seed=99)  # the seed is overridden by the checkpoint
    status = tf.train.Checkpoint(module=restored).read(path)
    got = [mask(restored, x), mask(restored, x)]  # the first call builds, then restores
    status.assert_consumed()
    np.testing.assert_array_equal(got, expected)


def test_deepcopy_has_its_own_stream():
    x = tf.ones([16])
    d = core.Dropout(0.5, seed=5)
    mask(d, x)
    clone = copy.deepcopy(d)
    np.testing.assert_array_equal(mask(clone, x), mask(d, x))
    state = d.rng_state.numpy()
    mask(clone, x)
    np.testing.assert_array_equal(d.rng_state.numpy(), state)


def test_noise_shape_tensor_rate_and_tensor_is_training():
    x = tf.ones([4, 3, 5])
    out = core.Dropout(0.5, noise_shape=[None, 1, 5], seed=0)(x, True).numpy()
    np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1], out.shape))  # shared along axis 1
    rate = tf.Variable(0.5)
    d = core.Dropout(rate, seed=0)
    fn = tf.function(lambda v, t: d(v, t))
    np.testing.assert_array_equal(fn(x, tf.constant(False)).numpy(), x.numpy())
    kept = fn(x, tf.constant(True)).numpy()
    assert set(np.unique(kept)) <= {0.0, 2.0}
    rate.assign(0.0)
    np.testing.assert_array_equal(fn(x, tf.constant(True)).numpy(), x.numpy())


def test_replicas_draw_different_masks_from_identical_state(mirrored):
    with mirrored.scope():
        d = core.Dropout(0.5, seed=11)
    x = tf.ones([32])  # the same data everywhere: any difference comes from the mask
    mirrored.run(lambda: d(x, False))
    start = d.rng_state.values[0].numpy()
    step = tf.function(lambda: mirrored.run(lambda: d(x, True)))
    first = None
    for _ in range(2):
        outs = [o.numpy() for o in mirrored.experimental_local_results(step())]
        first = outs if first is None else first
        for i in range(1, len(outs)):
            assert not np.array_equal(outs[i], outs[0]), f"replica {i} drew replica 0's mask"
        states = [s.numpy() for s in mirrored.experimental_local_results(d.rng_state)]
        for i in range(1, len(states)):
            np.testing.assert_array_equal(states[i], states[0])
    # Replica 0 draws what one device draws from the same state.
    single = core.Dropout(0.5, seed=11)
    single(x, False)
    single.rng_state.assign(start)
    np.testing.assert_array_equal(single(x, True).numpy(), first[0])
    # A training call outside strategy.run has no replica to draw for.
    with (
        mirrored.scope(),
        pytest.raises(
            RuntimeError,
            match=r"Dropout 'dropout': a training call under a tf.distribute strategy must run inside strategy.run",
        ),
    ):
        d(x, True)


def test_replicas_stay_in_step_with_uneven_batches(mirrored):
    # Per-replica batches of 5, 3, 4 and 4 rows: every copy of the state must still
    # advance alike, so the next step's masks come from the same state everywhere.
    with mirrored.scope():
        d = core.Dropout(0.5, seed=3)
    sizes = [5, 3, 4, 4]
    xs = [np.ones((n, 8), np.float32) for n in sizes]
    dist = mirrored.experimental_distribute_values_from_function(lambda ctx: xs[ctx.replica_id_in_sync_group])
    mirrored.run(lambda x: d(x, False), args=(dist,))
    step = tf.function(lambda x: mirrored.run(lambda x: d(x, True), args=(x,)))
    for _ in range(2):
        outs = [o.numpy() for o in mirrored.experimental_local_results(step(dist))]
        assert [o.shape[0] for o in outs] == sizes
        states = [s.numpy() for s in mirrored.experimental_local_results(d.rng_state)]
        for i in range(1, len(states)):
            np.testing.assert_array_equal(states[i], states[0], err_msg=f"replica {i}'s random state drifted")
        # Different masks: compare the rows every replica has.
        for i in range(1, len(outs)):
            assert not np.array_equal(outs[i][:3], outs[0][:3]), f"replica {i} drew replica 0's mask"


def test_state_advances_by_the_same_step_for_any_input_size():
    d = core.Dropout(0.5, seed=4)
    d(tf.ones([1]), False)
    start = d.rng_state.numpy()
    after = []
    for shape in ([1], [3, 5], [64, 64]):
        d.rng_state.assign(start)
        d(tf.ones(shape), True)
        after.append(d.rng_state.numpy())
    np.testing.assert_array_equal(after[0], after[1])
    np.testing.assert_array_equal(after[0], after[2])
    assert not np.array_equal(after[0], start)


def test_consecutive_masks_are_not_shifted_copies():
    # A fixed step per call must not make the next call reuse the previous call's random
    # blocks: each call draws under its own key. Shifted copies would agree on every
    # element at some small offset; independent masks agree on about half.
    d = core.Dropout(0.5, seed=6)
    x = tf.ones([4096])
    first, second = mask(d, x), mask(d, x)

    def agreement(shift):  # first[i] against second[i + shift]
        if shift >= 0:
            return np.mean(first[: first.size - shift] == second[shift:])
        return np.mean(first[-shift:] == second[: second.size + shift])

    assert max(agreement(k) for k in range(-64, 65)) < 0.6


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Dropout 'dropout': rate must be in \[0, 1\), got 1"):
        core.Dropout(1)
    with pytest.raises(TypeError, match=r"Dropout 'dropout': rate must be a float or a scalar tensor, got '0.5'"):
        core.Dropout("0.5")
    with pytest.raises(ValueError, match="noise_shape entries must be positive ints or None, got \\(0, 2\\)"):
        core.Dropout(0.5, noise_shape=(0, 2))
    with pytest.raises(TypeError, match="seed must be an int or None"):
        core.Dropout(0.5, seed=1.5)
    with pytest.raises(TypeError, match=r"Dropout 'drop': inputs must be floating point, got dtype int32"):
        core.Dropout(0.5, name="drop")(tf.ones([2], tf.int32), True)
    with pytest.raises(
        ValueError, match=r"Dropout 'drop': noise_shape \[2, 3\] does not broadcast against inputs of shape \(2, 4\)"
    ):
        core.Dropout(0.5, noise_shape=[2, 3], name="drop")(tf.ones([2, 4]), True)
    with pytest.raises(
        TypeError, match=r"Dropout 'drop': is_training must be a bool or a boolean scalar tensor, got 'no'"
    ):
        core.Dropout(0.5, name="drop")(tf.ones([2]), "no")
    with pytest.raises(TypeError, match=r"Dropout 'drop': is_training must be a boolean scalar, got dtype int32"):
        core.Dropout(0.5, name="drop")(tf.ones([2]), tf.constant(1))


def test_inputs_of_another_dtype_than_the_first(rng):
    d = core.Dropout(0.5, seed=1)
    d(tf.ones([8]), True)
    x = tf.constant(rng.normal(size=(16,)))
    out = d(x, True).numpy()
    assert out.dtype == np.float64
    kept = out != 0
    np.testing.assert_allclose(out[kept], 2.0 * x.numpy()[kept])


def test_numpy_scalars_are_numbers():
    x = tf.ones([6, 4])
    ours = core.Dropout(np.float32(0.25), noise_shape=[np.int64(6), None], seed=np.int64(3))
    plain = core.Dropout(0.25, noise_shape=[6, None], seed=3)
    np.testing.assert_array_equal(ours(x, np.bool_(True)).numpy(), plain(x, True).numpy())
    np.testing.assert_array_equal(ours(x, np.bool_(False)).numpy(), x.numpy())
