"""Masked categorical distributions and hash-noise sampling."""

import numpy as np
import tensorflow as tf

from models.alphastar_net import distributions


def test_uniform_noise_is_uniform_and_the_same_in_every_execution_mode():
    seed = tf.constant([11, 12])
    u = distributions.uniform(seed, 0, [100_000]).numpy()
    assert 0.0 < u.min() and u.max() < 1.0
    # Mean, variance and a 10-bin histogram within about 5 standard errors of uniform.
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / u.size)
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 10_000) < 5 * np.sqrt(10_000 * 0.9))
    # Streams and seeds give unrelated noise.
    other_stream = distributions.uniform(seed, 1, [100_000]).numpy()
    other_seed = distributions.uniform(tf.constant([11, 13]), 0, [100_000]).numpy()
    assert abs(np.corrcoef(u, other_stream)[0, 1]) < 0.02 and abs(np.corrcoef(u, other_seed)[0, 1]) < 0.02
    fn = lambda s: distributions.uniform(s, 3, [7, 5])  # noqa: E731
    eager = fn(seed).numpy()
    np.testing.assert_array_equal(tf.function(fn)(seed), eager)
    np.testing.assert_array_equal(tf.function(fn, jit_compile=True)(seed), eager)


def test_samples_follow_the_masked_softmax():
    logits = tf.constant([[1.0, 0.0, 2.0, -1.0, 0.5]])
    mask = tf.constant([[True, True, True, False, True]])
    masked = distributions.mask_logits(logits, mask, temperature=0.8)
    draws = 20_000
    batch = tf.tile(masked, [draws, 1])
    samples = distributions.sample(batch, tf.constant([1, 2]), 0).numpy()
    probs = tf.nn.softmax(masked)[0].numpy()
    assert probs[3] == 0.0 and not np.any(samples == 3)
    counts = np.bincount(samples, minlength=5)
    expected = draws * probs
    assert np.all(np.abs(counts - expected) <= 5 * np.sqrt(expected * (1 - probs)) + 1e-9), (counts, expected)


def test_log_prob_entropy_and_greedy():
    logits = distributions.mask_logits(
        tf.constant([[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]]), tf.constant([[1, 1, 0], [1, 1, 1]]) > 0
    )
    log_probs = distributions.log_prob(logits, tf.constant([1, -1])).numpy()
    np.testing.assert_allclose(log_probs, [-np.log1p(np.exp(-1.0)), 0.0], rtol=1e-6)
    p = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    q = np.exp([2.0, 2.0, 0.0]) / np.exp([2.0, 2.0, 0.0]).sum()
    np.testing.assert_allclose(
        distributions.entropy(logits), [-(p * np.log(p)).sum(), -(q * np.log(q)).sum()], rtol=1e-6
    )
    np.testing.assert_array_equal(distributions.greedy(logits), [1, 0])
