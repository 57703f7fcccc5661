"""SpectralNorm: the estimate against SVD, state handling, gradients, errors."""

import math

import numpy as np
import pytest
import tensorflow as tf

import core


def spectrum(w: np.ndarray) -> np.ndarray:
    return np.linalg.svd(w.reshape(-1, w.shape[-1]).astype(np.float64), compute_uv=False)


def with_singular_values(rng, rows: int, values: list[float]) -> np.ndarray:
    """A [rows, len(values)] float32 matrix with exactly these singular values."""
    left, _ = np.linalg.qr(rng.normal(size=(rows, len(values))))
    right, _ = np.linalg.qr(rng.normal(size=(len(values), len(values))))
    return (left * values @ right.T).astype(np.float32)


def test_converges_to_largest_singular_value(rng):
    # Singular values 4, 2, ...: each power-iteration step shrinks u's error angle by
    # s2/s1 = 1/2, and sigma's error goes with the square of that angle, so 30 steps leave
    # ~1e-18 of truncation error; what remains is float32 rounding in 16-term dot products
    # (a few 1e-7 relative), hence rtol 1e-5.
    w = with_singular_values(rng, 16, [4.0, 2.0, 1.0, 0.5])
    sn = core.SpectralNorm()
    for _ in range(30):
        out = sn(tf.constant(w), is_training=True)
    np.testing.assert_allclose(sn.sigma.numpy(), 4.0, rtol=1e-5)
    np.testing.assert_allclose(out.numpy(), w / 4.0, rtol=1e-5, atol=1e-6)
    assert spectrum(out.numpy())[0] == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("is_training", [True, False])
def test_estimate_is_the_divisor_and_moves_the_state_as_a_call_does(is_training, rng):
    w = tf.constant(with_singular_values(rng, 12, [3.0, 1.0, 0.5]))
    by_call, by_estimate = core.SpectralNorm(), core.SpectralNorm()
    by_call(w, True), by_estimate(w, True)  # builds both
    by_estimate.u.assign(by_call.u)
    by_estimate.sigma.assign(by_call.sigma)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(w)
        normalized = by_call(w, is_training)
        sigma = by_estimate.estimate(w, is_training)
        divided = w / sigma
    assert sigma.shape == [] and sigma.dtype == w.dtype
    np.testing.assert_array_equal(divided.numpy(), normalized.numpy())
    np.testing.assert_array_equal(by_estimate.u.numpy(), by_call.u.numpy())
    np.testing.assert_array_equal(by_estimate.sigma.numpy(), by_call.sigma.numpy())
    probe = tf.constant(rng.normal(size=w.shape).astype(np.float32))
    np.testing.assert_array_equal(
        tape.gradient(divided, w, output_gradients=probe).numpy(),
        tape.gradient(normalized, w, output_gradients=probe).numpy(),
    )


def test_conv_kernel_with_n_steps(rng):
    # A random rank-4 kernel seen as an [18, 4] matrix. Enough steps in one call for the
    # (s2/s1)^(2 n) bound on sigma's relative error to be below 1e-7.
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    s = spectrum(w)
    steps = math.ceil(math.log(1e-7) / (2 * math.log(s[1] / s[0])))
    sn = core.SpectralNorm(n_steps=steps)
    out = sn(tf.constant(w), is_training=True)
    assert out.shape == w.shape and sn.u.shape == (4,)
    np.testing.assert_allclose(sn.sigma.numpy(), s[0], rtol=1e-5)
    np.testing.assert_allclose(out.numpy(), w / s[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "function"])
def test_inference_reads_state_without_writing_it(traced, rng):
    w = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    sn = core.SpectralNorm()
    sn(w, is_training=True)
    u, sigma = sn.u.numpy(), sn.sigma.numpy()
    run = tf.function(sn) if traced else sn
    out = run(w, is_training=False)
    np.testing.assert_array_equal(sn.u.numpy(), u)
    np.testing.assert_array_equal(sn.sigma.numpy(), sigma)
    # Sigma from the stored u is ||W u||, the value the training call stored.
    np.testing.assert_allclose(out.numpy(), w.numpy() / np.linalg.norm(w.numpy() @ u), rtol=1e-6)
    np.testing.assert_allclose(out.numpy(), w.numpy() / sigma, rtol=1e-6)


def test_tensor_is_training(rng):
    w = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    sn = core.SpectralNorm()
    sn(w, is_training=False)
    step = tf.function(lambda w, training: sn(w, training))
    u = sn.u.numpy()
    step(w, tf.constant(False))
    np.testing.assert_array_equal(sn.u.numpy(), u)
    step(w, tf.constant(True))
    assert not np.array_equal(sn.u.numpy(), u)
    assert sn.sigma.numpy() > 0


def test_tensor_is_training_under_mirrored(mirrored, rng):
    # The writes synchronise replicas ("first" aggregation), which a tf.cond branch
    # may not do under MirroredStrategy: the flag selects instead.
    w = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    with mirrored.scope():
        sn = core.SpectralNorm()
    mirrored.run(lambda: sn(w, is_training=False))
    reference = core.SpectralNorm()
    reference(w, is_training=False)
    reference.u.assign(sn.u.values[0])
    step = tf.function(lambda t: mirrored.run(lambda: sn(w, is_training=t)))

    def copies(v):
        return [c.numpy() for c in mirrored.experimental_local_results(v)]

    u = sn.u.values[0].numpy()
    outs = [o.numpy() for o in mirrored.experimental_local_results(step(tf.constant(False)))]
    for c in copies(sn.u):
        np.testing.assert_array_equal(c, u)
    expected = reference(w, is_training=False).numpy()
    for o in outs:
        np.testing.assert_allclose(o, expected, rtol=1e-6)

    outs = [o.numpy() for o in mirrored.experimental_local_results(step(tf.constant(True)))]
    expected = reference(w, is_training=True).numpy()
    for o in outs:
        np.testing.assert_allclose(o, expected, rtol=1e-6)
    for v, r in [(sn.u, reference.u), (sn.sigma, reference.sigma)]:
        for c in copies(v):
            np.testing.assert_allclose(c, r.numpy(), rtol=1e-6)
    assert not np.allclose(copies(sn.u)[0], u)


def test_tensor_is_training_gradient_follows_the_selected_sigma(rng):
    w = tf.constant(rng.normal(size=(4, 3)).astype(np.float32))
    for flag in (False, True):
        sn, reference = core.SpectralNorm(), core.SpectralNorm()
        sn(w, is_training=False)
        reference(w, is_training=False)
        reference.u.assign(sn.u)
        grads = []
        for module, is_training in ((sn, tf.constant(flag)), (reference, flag)):
            with tf.GradientTape() as tape:
                tape.watch(w)
                loss = tf.reduce_sum(tf.sin(module(w, is_training)))
            grads.append(tape.gradient(loss, w).numpy())
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(sn.u.numpy(), reference.u.numpy())
        np.testing.assert_array_equal(sn.sigma.numpy(), reference.sigma.numpy())


def test_gradient_holds_u_and_v_constant(rng):
    # With u, v fixed, d(weight / sigma) where sigma = v^T W u has the closed form
    # dL/dW = G / sigma - (sum(G * W) / sigma^2) v u^T   (Miyato et al., 2018, section 2.2).
    w = rng.normal(size=(4, 3)).astype(np.float32)
    g = rng.normal(size=(4, 3)).astype(np.float32)
    sn = core.SpectralNorm()
    wt = tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch(wt)
        loss = tf.reduce_sum(sn(wt, is_training=True) * g)
    grad = tape.gradient(loss, wt).numpy()
    u = sn.u.numpy().astype(np.float64)
    v = w.astype(np.float64) @ u
    v /= np.linalg.norm(v)
    sigma = v @ w @ u
    expected = g / sigma - (np.sum(g * w) / sigma**2) * np.outer(v, u)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_zero_weight_gives_zeros_not_nans_and_keeps_u(rng):
    sn = core.SpectralNorm()
    w = tf.zeros([3, 2])
    with tf.GradientTape() as tape:
        tape.watch(w)
        loss = tf.reduce_sum(sn(w, is_training=True))
    u = sn.u.numpy()
    np.testing.assert_allclose(np.linalg.norm(u), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(tape.gradient(loss, w).numpy()))
    np.testing.assert_array_equal(sn(w, is_training=True).numpy(), 0.0)
    np.testing.assert_array_equal(sn.u.numpy(), u)  # not collapsed: a later weight still converges
    w = with_singular_values(rng, 3, [2.0, 0.5])
    for _ in range(10):
        sn(tf.constant(w), is_training=True)
    np.testing.assert_allclose(sn.sigma.numpy(), 2.0, rtol=1e-5)


def test_half_precision_iterates_in_float32(rng):
    w = with_singular_values(rng, 6, [3.0, 1.0, 0.5])
    sn = core.SpectralNorm(n_steps=20)
    out = sn(tf.constant(w, tf.float16), is_training=True)
    assert out.dtype == tf.float16 and sn.u.dtype == tf.float32
    np.testing.assert_allclose(sn.sigma.numpy(), 3.0, rtol=1e-3)  # the float16 weight's own rounding
    np.testing.assert_allclose(out.numpy().astype(np.float32), w / 3.0, atol=2e-3)


def test_bad_inputs():
    sn = core.SpectralNorm(name="sn")
    with pytest.raises(
        ValueError,
        match=r"SpectralNorm 'sn': expected weight of rank at least 2 \[\.\.\., inputs, outputs\], got shape \(3,\)",
    ):
        sn(tf.ones([3]), is_training=True)
    with pytest.raises(TypeError, match=r"SpectralNorm 'sn': weight must be floating point, got dtype int32"):
        sn(tf.ones([3, 2], tf.int32), is_training=True)
    sn(tf.ones([3, 3, 2, 4]), is_training=True)
    with pytest.raises(
        ValueError,
        match=(
            r"SpectralNorm 'sn': expected a weight of shape \(3, 3, 2, 4\) "
            r"\(the first call's\), got shape \(3, 3, 2, 5\)"
        ),
    ):
        sn(tf.ones([3, 3, 2, 5]), is_training=False)
    with pytest.raises(
        TypeError, match=r"SpectralNorm 'sn': weight elements have dtype float64, but the module works in float32"
    ):
        sn(tf.ones([3, 3, 2, 4], tf.float64), is_training=False)
    with pytest.raises(ValueError, match=r"SpectralNorm 'spectral_norm': n_steps must be a positive int, got 0"):
        core.SpectralNorm(n_steps=0)
    with pytest.raises(ValueError, match=r"SpectralNorm 'spectral_norm': eps must be a positive number, got 0"):
        core.SpectralNorm(eps=0)
    with pytest.raises(
        TypeError, match=r"SpectralNorm 'sn': is_training must be a bool or a boolean scalar tensor, got 'no'"
    ):
        sn(tf.ones([3, 3, 2, 4]), is_training="no")
    with pytest.raises(TypeError, match=r"SpectralNorm 'sn': is_training must be a boolean scalar, got dtype float32"):
        sn(tf.ones([3, 3, 2, 4]), is_training=tf.constant(1.0))


def test_numpy_scalars_are_numbers(rng):
    w = tf.constant(rng.normal(size=(4, 3)).astype(np.float32))
    ours = core.SpectralNorm(n_steps=np.int64(3), eps=np.float32(1e-3))
    plain = core.SpectralNorm(n_steps=3, eps=1e-3)
    ours(w, np.bool_(False))
    plain(w, False)
    plain.u.assign(ours.u)
    np.testing.assert_array_equal(ours(w, np.bool_(True)).numpy(), plain(w, True).numpy())
    assert ours.n_steps == 3 and type(ours.n_steps) is int
