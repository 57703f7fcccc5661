"""Hinge losses, orthogonal regularisation, truncation, standing statistics, the weight average."""

import numpy as np
import pytest
import tensorflow as tf

from models.biggan import biggan, losses, sampling


def test_hinge_losses():
    real, fake = losses.discriminator_hinge_loss(tf.constant([2.0, 0.5, -1.0]), tf.constant([-2.0, 0.0, 3.0]))
    np.testing.assert_allclose(real, (0 + 0.5 + 2.0) / 3)
    np.testing.assert_allclose(fake, (0 + 1.0 + 4.0) / 3)
    np.testing.assert_allclose(losses.generator_hinge_loss(tf.constant([1.0, -3.0])), 1.0)


@pytest.mark.parametrize("shape", [[3, 3, 4, 5], [4, 9], [20, 6]], ids=["kernel", "wide", "tall"])
def test_off_diagonal_penalty_is_the_papers_formula(shape):
    w = np.random.RandomState(0).normal(size=shape)
    m = w.reshape(-1, shape[-1])
    gram = m.T @ m
    expected = np.sum((gram * (1 - np.eye(shape[-1]))) ** 2)
    got = losses.off_diagonal_penalty(tf.constant(w))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # Orthonormal columns cost nothing; the diagonal (the columns' norms) is free.
    q = np.linalg.qr(np.random.RandomState(1).normal(size=[8, 5]))[0] * 3.0
    assert abs(float(losses.off_diagonal_penalty(tf.constant(q)))) < 1e-9
    np.testing.assert_allclose(losses.orthogonal_regularization([tf.constant(w)] * 2, beta=1e-4), 2e-4 * expected)


def test_regularized_weights_leave_out_the_shared_embedding_and_vectors():
    g = biggan.Generator(ch=1, resolution=32, num_classes=2, dim_z=8, shared_dim=2, attention_resolution=None)
    g(tf.zeros([1, 8]), tf.constant([0]), False)
    names = [v.name for v in losses.regularized_weights(g)]
    assert names and all("shared" not in n and "/b:" not in n for n in names)
    assert len(names) == len([v for v in g.trainable_variables if v.shape.rank >= 2]) - 1


def test_truncation_resamples_rather_than_rescales():
    threshold = 0.5
    z = sampling.truncated_normal([200_000], [3, 4], threshold).numpy()
    assert np.abs(z).max() <= threshold
    assert np.all(z == sampling.truncated_normal([200_000], [3, 4], threshold).numpy())  # stateless
    # A normal conditioned on |z| <= 0.5 is nearly flat there (its density at 0.5 is
    # exp(-1/8) = 0.88 of that at 0); a scaled normal (z * 0.5 / max|z|) would pile up at 0.
    counts, _ = np.histogram(z, bins=10, range=(-threshold, threshold))
    edge_to_centre = (counts[0] + counts[-1]) / (counts[4] + counts[5])
    assert 0.84 < edge_to_centre < 0.92
    # Its standard deviation is the truncated normal's, 0.2830 (a uniform's would be 0.2887).
    assert abs(z.std() - 0.2830) < 0.002
    plain = sampling.truncated_normal([1000], [3, 4]).numpy()
    assert np.abs(plain).max() > 2.0
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        sampling.truncated_normal([3], [0, 0], -1.0)


def test_weight_average_follows_its_formula():
    source, target = tf.Module(), tf.Module()
    source.w = tf.Variable([1.0, 2.0])
    source.s = tf.Variable([5.0], trainable=False)
    target.w = tf.Variable([0.0, 0.0])
    target.s = tf.Variable([0.0], trainable=False)
    average = sampling.WeightAverage(source, target, decay=0.9, start_step=2)
    average.update(0)  # before the start: a copy
    np.testing.assert_allclose(target.w.numpy(), [1.0, 2.0])
    source.w.assign([3.0, 4.0])
    average.update(1)
    np.testing.assert_allclose(target.w.numpy(), [3.0, 4.0])
    source.w.assign([13.0, 14.0])
    source.s.assign([7.0])
    average.update(2)
    np.testing.assert_allclose(target.w.numpy(), [0.9 * 3 + 0.1 * 13, 0.9 * 4 + 0.1 * 14], rtol=1e-6)
    np.testing.assert_allclose(target.s.numpy(), [7.0])  # state is copied
    average.update(tf.constant(3))
    np.testing.assert_allclose(target.w.numpy(), [0.81 * 3 + 0.19 * 13, 0.81 * 4 + 0.19 * 14], rtol=1e-6)
    with pytest.raises(ValueError, match="decay must be in"):
        sampling.WeightAverage(source, target, decay=1.0)
    other = tf.Module()
    other.w = tf.Variable([0.0])
    with pytest.raises(ValueError, match="built like source"):
        sampling.WeightAverage(source, other)


def test_standing_statistics_make_inference_normalise_like_the_batches():
    tf.random.set_seed(0)
    g = biggan.Generator(ch=1, resolution=32, num_classes=2, dim_z=8, shared_dim=2, attention_resolution=None)
    z = sampling.truncated_normal([16, 8], [5, 0], 1.0)
    y = tf.random.stateless_uniform([16], [5, 1], 0, 2, tf.int32)
    g(z * 3.0 + 1.0, 1 - y, True)  # moving averages of another batch (debiased: exactly its statistics)
    before = g(z, y, is_training=False).numpy()
    u_before = g.linear.spectral_norm.u.numpy()
    sampling.standing_statistics(g, num_batches=1, batch_size=16, seed=5, threshold=1.0)
    assert not np.array_equal(g.linear.spectral_norm.u.numpy(), u_before)  # the passes advance the norms
    # One pass over exactly this batch: inference now normalises with its statistics
    # (but the variance times n / (n - 1), n >= 16 * 16 here, as the moving variance keeps it).
    local = g(z, y, is_training=False, test_local_stats=True).numpy()
    inference = g(z, y, is_training=False).numpy()
    assert np.abs(inference - local).max() < 1e-2
    assert np.abs(before - local).mean() > 20 * np.abs(inference - local).mean()
    # Averages over several passes: between the extremes of the single passes.
    singles = []
    for seed in (11, 12):
        sampling.standing_statistics(g, num_batches=1, batch_size=4, seed=seed)
        singles.append(g.output_bn.moving_mean.value.numpy())
    sampling.standing_statistics(g, num_batches=8, batch_size=4, seed=11)
    averaged = g.output_bn.moving_mean.value.numpy()
    assert np.all(np.isfinite(averaged)) and not np.allclose(averaged, singles[0])


def test_image_grid_and_png(tmp_path):
    images = np.linspace(-1, 1, 5 * 4 * 4 * 3).reshape(5, 4, 4, 3)
    grid = sampling.image_grid(images, columns=3)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[1:5, 1:5], np.round((images[0] + 1) * 127.5).astype(np.uint8))
    sampling.write_png(str(tmp_path / "g.png"), grid)
    decoded = tf.io.decode_png(tf.io.read_file(str(tmp_path / "g.png"))).numpy()
    np.testing.assert_array_equal(decoded, grid)
