"""V-trace, TD(lambda) and UPGO returns against straightforward NumPy loops."""

import numpy as np
import pytest
import tensorflow as tf

from models.alphastar_net import rl

T, B = 7, 3


def _episode(rng):
    discounts = 0.9 * (rng.uniform(size=[T, B]) > 0.15)  # some episode ends inside
    return (
        rng.normal(size=[T, B]).astype(np.float32),  # log_rhos
        discounts.astype(np.float32),
        rng.normal(size=[T, B]).astype(np.float32),  # rewards
        rng.normal(size=[T, B]).astype(np.float32),  # values
        rng.normal(size=[B]).astype(np.float32),  # bootstrap
    )


def vtrace_numpy(log_rhos, discounts, rewards, values, bootstrap, rho_bar, pg_rho_bar, lam):
    """Espeholt et al. (2018), equation 1, summed term by term."""
    rhos = np.exp(log_rhos.astype(np.float64))
    clipped = rhos if rho_bar is None else np.minimum(rho_bar, rhos)
    cs = lam * np.minimum(1.0, rhos)
    v = np.concatenate([values, bootstrap[None]]).astype(np.float64)
    vs = np.zeros([T, B])
    for s in range(T):
        total = v[s].copy()
        for t in range(s, T):
            weight = np.ones(B)
            for i in range(s, t):
                weight *= discounts[i] * cs[i]
            total += weight * clipped[t] * (rewards[t] + discounts[t] * v[t + 1] - v[t])
        vs[s] = total
    next_vs = np.concatenate([vs[1:], bootstrap[None]])
    pg_rhos = rhos if pg_rho_bar is None else np.minimum(pg_rho_bar, rhos)
    return vs, pg_rhos * (rewards + discounts * next_vs - values)


def lambda_returns_numpy(rewards, discounts, values, bootstrap, lambdas):
    lambdas = np.broadcast_to(lambdas, [T, B])
    out = np.zeros([T, B])
    next_return = bootstrap.astype(np.float64)
    next_value = bootstrap.astype(np.float64)
    for t in reversed(range(T)):
        out[t] = rewards[t] + discounts[t] * ((1 - lambdas[t]) * next_value + lambdas[t] * next_return)
        next_return, next_value = out[t], values[t]
    return out


def upgo_numpy(rewards, discounts, values, bootstrap):
    """Follows the behaviour while r + d V' >= V at the next step, written out as a forward sum."""
    v = np.concatenate([values, bootstrap[None]])
    out = np.zeros([T, B])
    for b in range(B):
        for s in range(T):
            total, weight, t = 0.0, 1.0, s
            while True:
                total += weight * rewards[t, b]
                weight *= discounts[t, b]
                if t + 1 == T:
                    total += weight * v[T, b]
                    break
                good = rewards[t + 1, b] + discounts[t + 1, b] * v[t + 2, b] >= v[t + 1, b]
                if not good:
                    total += weight * v[t + 1, b]
                    break
                t += 1
            out[s, b] = total
    return out


@pytest.mark.parametrize(
    "rho_bar,pg_rho_bar,lam", [(1.0, 1.0, 1.0), (None, None, 1.0), (0.8, 1.5, 0.9), (2.0, None, 0.5)]
)
def test_vtrace_matches_numpy(rho_bar, pg_rho_bar, lam):
    args = _episode(np.random.RandomState(0))
    got = rl.vtrace(*args, clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar, lambda_=lam)
    vs, pg = vtrace_numpy(*args, rho_bar, pg_rho_bar, lam)
    np.testing.assert_allclose(got.vs, vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.pg_advantages, pg, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0, "per_step"])
def test_lambda_returns_match_numpy(lam):
    rng = np.random.RandomState(1)
    _, discounts, rewards, values, bootstrap = _episode(rng)
    lambdas = rng.uniform(size=[T, B]).astype(np.float32) if lam == "per_step" else lam
    got = rl.lambda_returns(rewards, discounts, values, bootstrap, lambdas)
    np.testing.assert_allclose(got, lambda_returns_numpy(rewards, discounts, values, bootstrap, lambdas), rtol=1e-5)


def test_lambda_returns_limits():
    _, discounts, rewards, values, bootstrap = _episode(np.random.RandomState(2))
    one_step = rl.lambda_returns(rewards, discounts, values, bootstrap, 0.0)
    next_values = np.concatenate([values[1:], bootstrap[None]])
    np.testing.assert_allclose(one_step, rewards + discounts * next_values, rtol=1e-6)
    monte_carlo = rl.lambda_returns(rewards, discounts, values, bootstrap, 1.0)
    g, expected = bootstrap.astype(np.float64), np.zeros([T, B])
    for t in reversed(range(T)):
        g = rewards[t] + discounts[t] * g
        expected[t] = g
    np.testing.assert_allclose(monte_carlo, expected, rtol=1e-5)


@pytest.mark.parametrize("seed", [3, 4])
def test_upgo_returns_match_numpy(seed):
    _, discounts, rewards, values, bootstrap = _episode(np.random.RandomState(seed))
    got = rl.upgo_returns(rewards, discounts, values, bootstrap)
    np.testing.assert_allclose(got, upgo_numpy(rewards, discounts, values, bootstrap), rtol=1e-5, atol=1e-5)


def test_vtrace_equals_lambda_returns_on_policy_without_clipping():
    _, discounts, rewards, values, bootstrap = _episode(np.random.RandomState(5))
    zeros = np.zeros([T, B], np.float32)
    for lam in (1.0, 0.8):
        got = rl.vtrace(zeros, discounts, rewards, values, bootstrap, None, None, lambda_=lam)
        np.testing.assert_allclose(
            got.vs, rl.lambda_returns(rewards, discounts, values, bootstrap, lam), rtol=1e-5, atol=1e-6
        )


def test_no_gradient_flows_through_vtrace_and_returns_work_under_xla():
    args = [tf.constant(a) for a in _episode(np.random.RandomState(6))]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(args)
        out = rl.vtrace(*args)
        total = tf.reduce_sum(out.vs) + tf.reduce_sum(out.pg_advantages)
    assert all(g is None for g in tape.gradient(total, args))

    @tf.function(jit_compile=True)
    def returns(log_rhos, discounts, rewards, values, bootstrap):
        return (
            rl.vtrace(log_rhos, discounts, rewards, values, bootstrap),
            rl.upgo_returns(rewards, discounts, values, bootstrap),
        )

    compiled = returns(*args)
    _, discounts, rewards, values, bootstrap = args
    eager = (rl.vtrace(*args), rl.upgo_returns(rewards, discounts, values, bootstrap))
    for a, b in zip(tf.nest.flatten(compiled), tf.nest.flatten(eager)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_shape_errors_name_the_input():
    log_rhos, discounts, rewards, values, bootstrap = _episode(np.random.RandomState(7))
    with pytest.raises(ValueError, match="values has shape \\(6, 3\\)"):
        rl.vtrace(log_rhos, discounts, rewards, values[1:], bootstrap)
    with pytest.raises(ValueError, match="bootstrap_value must be \\[B\\]"):
        rl.lambda_returns(rewards, discounts, values, bootstrap[:2], 0.8)
    with pytest.raises(ValueError, match="time-major"):
        rl.upgo_returns(rewards[0], discounts[0], values[0], bootstrap)
