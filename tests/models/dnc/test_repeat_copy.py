"""The repeat-copy task: sequence layout, determinism, loss and metrics."""

import numpy as np
import pytest
import tensorflow as tf

from models.dnc import repeat_copy as rc


def lengths_and_repeats(batch, num_bits):
    """Recover L and R of each sequence from its observations."""
    obs = batch.observations.numpy()
    count_step = obs[:, :, num_bits + 1].argmax(0)  # t = L + 1
    repeats = np.round(obs[count_step, np.arange(obs.shape[1]), num_bits + 1] * 10).astype(int)
    return count_step - 1, repeats


def test_layout_of_every_sequence():
    task = rc.RepeatCopy(num_bits=3, batch_size=64, min_length=1, max_length=3, min_repeats=1, max_repeats=3)
    batch = task.batch(tf.constant([1, 2]))
    obs, tgt, mask = (x.numpy() for x in batch)
    assert obs.shape == (task.time_steps, 64, 5) and tgt.shape == (task.time_steps, 64, 4)
    assert task.time_steps == 3 * 4 + 3
    lengths, repeats = lengths_and_repeats(batch, 3)
    assert set(lengths) == {1, 2, 3} and set(repeats) == {1, 2, 3}
    for b, (length, r) in enumerate(zip(lengths, repeats)):
        np.testing.assert_array_equal(obs[0, b], [0, 0, 0, 1, 0])  # start flag
        pattern = obs[1 : length + 1, b, :3]
        first = length + 2
        np.testing.assert_array_equal(tgt[first : first + length * r, b, :3], np.tile(pattern, (r, 1)))
        np.testing.assert_array_equal(tgt[first + length * r, b], [0, 0, 0, 1])  # end marker
        np.testing.assert_array_equal(
            mask[:, b], [0] * first + [1] * (length * r + 1) + [0] * (task.time_steps - first - length * r - 1)
        )
        assert obs[length + 2 :, b].sum() == 0 and tgt[:first, b].sum() == 0


def test_same_seed_same_batch_other_seed_other_batch():
    task = rc.RepeatCopy()
    a, b, c = task.batch(tf.constant([0, 5])), task.batch(tf.constant([0, 5])), task.batch(tf.constant([0, 6]))
    np.testing.assert_array_equal(a.observations.numpy(), b.observations.numpy())
    assert not np.array_equal(a.observations.numpy(), c.observations.numpy())


def test_zero_logits_cost_11_26_nats():
    # E[L R + 1] = 3.25 target steps x 5 channels x ln 2 = 11.26 nats.
    task = rc.RepeatCopy(batch_size=4000)
    batch = task.batch(tf.constant([3, 4]))
    loss = rc.masked_sigmoid_cross_entropy(tf.zeros_like(batch.targets), batch.targets, batch.mask).numpy()
    per_sequence = batch.mask.numpy().sum(0) * 5 * np.log(2)
    stderr = per_sequence.std() / np.sqrt(4000)
    assert abs(loss - 3.25 * 5 * np.log(2)) < 4 * stderr
    assert 3.25 * 5 * np.log(2) == pytest.approx(11.26, abs=0.005)


def test_bit_errors_count_wrong_bits_on_masked_steps_only():
    task = rc.RepeatCopy(batch_size=8)
    batch = task.batch(tf.constant([1, 1]))
    perfect = 20.0 * (2 * batch.targets - 1)
    assert rc.bit_errors(perfect, batch.targets, batch.mask).numpy() == 0
    assert rc.masked_sigmoid_cross_entropy(perfect, batch.targets, batch.mask).numpy() < 1e-6
    inverted = -perfect
    expected = (batch.mask.numpy().sum(0) * 5).mean()
    assert rc.bit_errors(inverted, batch.targets, batch.mask).numpy() == pytest.approx(expected)
    # Garbage outside the mask costs nothing.
    noisy = perfect + 100.0 * (1 - batch.mask[..., None]) * tf.random.normal(perfect.shape)
    assert rc.bit_errors(noisy, batch.targets, batch.mask).numpy() == 0


def test_task_streams_and_evaluation():
    task = rc.RepeatCopyTask(eval_sequences=30, eval_batch_size=20)
    first = list(task.dataset(seed=0, start_step=3).take(2))
    again = list(task.dataset(seed=0, start_step=0).take(5))[3:]
    for a, b in zip(first, again):  # step s is the same batch wherever the stream starts
        np.testing.assert_array_equal(a.targets.numpy(), b.targets.numpy())
    assert not np.array_equal(first[0].observations.numpy(), first[1].observations.numpy())
    # Two replicas: each step's elements are the two halves of the one-replica batch.
    two = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    halves = list(task.dataset(seed=0, start_step=3, context=two).take(2))
    assert [h.targets.shape[1] for h in halves] == [8, 8]
    for key in ("observations", "targets", "mask"):
        joined = np.concatenate([getattr(h, key).numpy() for h in halves], axis=1)
        np.testing.assert_array_equal(joined, getattr(first[0], key).numpy())
    # Two pipelines of two replicas each (two workers): the second holds replicas 2 and 3.
    second = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=4)
    quarters = list(task.dataset(seed=0, start_step=3, context=second).take(2))
    joined = np.concatenate([q.targets.numpy() for q in quarters], axis=1)
    np.testing.assert_array_equal(joined, first[0].targets.numpy()[:, 8:])
    with pytest.raises(ValueError, match="batch size 16 does not split over 3 replicas"):
        task.dataset(0, 0, tf.distribute.InputContext(num_replicas_in_sync=3))
    results = task.evaluate(lambda obs: tf.zeros([obs.shape[0], obs.shape[1], 5]), seed=0)
    assert set(results) == {"held_out", "length_3_4", "repeats_3_4"}
    assert results["held_out"]["loss"] == pytest.approx(11.26, rel=0.25)
    assert results["length_3_4"]["loss"] > results["held_out"]["loss"]  # longer sequences, more bits
    assert not task.is_solved(results)
    assert task.is_solved({"held_out": {"loss": 0.05, "bit_errors": 0.0}})


def test_bad_sizes():
    with pytest.raises(ValueError, match="max_length 1 < min_length 2"):
        rc.RepeatCopy(min_length=2, max_length=1)
    with pytest.raises(ValueError, match="num_bits must be a positive int"):
        rc.RepeatCopy(num_bits=0)
