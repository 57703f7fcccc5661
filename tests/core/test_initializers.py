"""Initializers: exact values, distributions, Sonnet agreement, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

from core import initializers as init

N = 200_000  # samples for distribution checks


def test_constant_initializers_match_sonnet():
    for ours, theirs in [
        (init.Zeros(), snt.initializers.Zeros()),
        (init.Ones(), snt.initializers.Ones()),
        (init.Constant(2.5), snt.initializers.Constant(2.5)),
        (init.Identity(3.0), snt.initializers.Identity(3.0)),
    ]:
        for dtype in (tf.float32, tf.float64):
            np.testing.assert_array_equal(ours([4, 4], dtype).numpy(), theirs([4, 4], dtype).numpy())
            assert ours([4, 4], dtype).dtype == dtype


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (init.RandomNormal(1.0, 2.0), snt.initializers.RandomNormal(1.0, 2.0)),
        (init.TruncatedNormal(-1.0, 0.5), snt.initializers.TruncatedNormal(-1.0, 0.5)),
        (init.RandomUniform(-2.0, 3.0), snt.initializers.RandomUniform(-2.0, 3.0)),
        (
            init.VarianceScaling(2.0, "fan_in", "truncated_normal"),
            snt.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"),
        ),
        (init.VarianceScaling(1.0, "fan_avg", "uniform"), snt.initializers.VarianceScaling(1.0, "fan_avg", "uniform")),
        (
            init.VarianceScaling(0.5, "fan_out", "untruncated_normal"),
            snt.initializers.VarianceScaling(0.5, "fan_out", "normal"),
        ),
    ],
    ids=["normal", "truncated", "uniform", "vs_trunc", "vs_uniform", "vs_normal"],
)
def test_random_initializers_have_sonnets_distribution(ours, theirs):
    shape = [N // 100, 100]
    a, b = ours(shape, tf.float32).numpy().ravel(), theirs(shape, tf.float32).numpy().ravel()
    # Two-sample Kolmogorov-Smirnov statistic; 0.01 is beyond the 1e-6 critical value (0.0085).
    grid = np.sort(np.concatenate([a, b]))
    ks = (
        np.max(np.abs(np.searchsorted(np.sort(a), grid, "right") - np.searchsorted(np.sort(b), grid, "right"))) / a.size
    )
    assert ks < 0.01


def test_variance_scaling_has_asked_for_variance():
    # He init of a 3x3x64->128 kernel: variance 2 / (3*3*64).
    w = init.VarianceScaling(2.0)([3, 3, 64, 128], tf.float64).numpy()
    assert w.var() == pytest.approx(2.0 / (9 * 64), rel=0.02)
    assert init.fans([3, 3, 64, 128]) == (576.0, 1152.0)


def test_truncated_normal_stays_within_two_stddev():
    w = init.TruncatedNormal(0.0, 0.1)([10_000], tf.float32).numpy()
    assert np.all(np.abs(w) <= 0.2 + 1e-7)


@pytest.mark.parametrize("shape", [(6, 6), (8, 3), (3, 8), (2, 3, 4, 5)])
def test_orthogonal(shape):
    q = init.Orthogonal(gain=2.0)(shape, tf.float64).numpy().reshape(-1, shape[-1])
    rows, cols = q.shape
    gram = q.T @ q if rows >= cols else q @ q.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(rows, cols)), atol=1e-10)


def test_seed_makes_values_repeatable():
    def draw(global_seed):
        tf.random.set_seed(global_seed)
        return init.RandomNormal(seed=3)([5], tf.float32).numpy()

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        init.VarianceScaling(mode="fan_sideways")
    with pytest.raises(ValueError, match="distribution must be one of"):
        init.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="scale > 0"):
        init.VarianceScaling(scale=0.0)
    with pytest.raises(ValueError, match="stddev >= 0"):
        init.RandomNormal(stddev=-1.0)
    with pytest.raises(ValueError, match="minval < maxval"):
        init.RandomUniform(1.0, 1.0)
    with pytest.raises(TypeError, match="cannot make dtype int32"):
        init.TruncatedNormal()([2], tf.int32)
    with pytest.raises(ValueError, match="fully known, non-negative shape"):
        init.Zeros()([None, 2], tf.float32)
    with pytest.raises(ValueError, match="rank >= 2"):
        init.Orthogonal()([3], tf.float32)
    with pytest.raises(ValueError, match="2-D shapes only"):
        init.Identity()([2, 2, 2], tf.float32)
    with pytest.raises(TypeError, match="scalar value"):
        init.Constant([1.0, 2.0])
