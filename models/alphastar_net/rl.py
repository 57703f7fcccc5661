"""Returns and advantages for actor-critic learning: V-trace, TD(lambda) and UPGO.

Every function takes time-major tensors [T, B] (rewards r_t, discounts d_t, values
V(x_t)) and the bootstrap values V(x_T) [B], and runs its backward recursion with
`tf.scan`, so T may be unknown until run time and XLA compiles it.
"""

import collections

import tensorflow as tf

VTraceReturns = collections.namedtuple("VTraceReturns", ["vs", "pg_advantages"])
VTraceReturns.__doc__ = """V-trace's value targets `vs` [T, B] and policy-gradient advantages [T, B]."""


def _check(who: str, **tensors: tf.Tensor) -> None:
    """ValueError unless the [T, B] inputs agree in shape and the bootstrap value is [B]."""
    bootstrap = tensors.pop("bootstrap_value")
    shapes = {name: t.shape for name, t in tensors.items()}
    reference = shapes["rewards"]
    if reference.rank is not None and reference.rank != 2:
        raise ValueError(f"{who}: rewards must be time-major [T, B], got shape {reference}")
    for name, shape in shapes.items():
        if not shape.is_compatible_with(reference):
            raise ValueError(f"{who}: {name} has shape {shape}, rewards {reference}; every sequence must be [T, B]")
    if not bootstrap.shape.is_compatible_with(reference[1:]):
        raise ValueError(f"{who}: bootstrap_value must be [B] = {reference[1:]}, got shape {bootstrap.shape}")


def _backward(step, elements, last):
    """Runs `carry = step(carry, element_t)` for t = T - 1 down to 0 from `last`; returns every carry [T, B]."""
    return tf.scan(step, elements, initializer=last, reverse=True)


def vtrace(
    log_rhos: tf.Tensor,
    discounts: tf.Tensor,
    rewards: tf.Tensor,
    values: tf.Tensor,
    bootstrap_value: tf.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    r"""V-trace targets and advantages (Espeholt et al., 2018, "IMPALA", arXiv:1802.01561, section 4).

    With rho_t = pi(a_t | x_t) / mu(a_t | x_t) = exp(log_rhos_t) (target over behaviour
    policy), truncated importance weights rhobar_t = min(clip_rho_threshold, rho_t) and
    trace coefficients c_t = lambda_ * min(1, rho_t):

        delta_t = rhobar_t (r_t + d_t V(x_{t+1}) - V(x_t))
        vs_t    = V(x_t) + delta_t + d_t c_t (vs_{t+1} - V(x_{t+1})),       vs_T = V(x_T)
        pg_advantages_t = min(clip_pg_rho_threshold, rho_t) (r_t + d_t vs_{t+1} - V(x_t))

    (the paper's equation 1, written as its recursion). With every rho equal to 1 and no
    clipping, vs is the TD(lambda_) return of `lambda_returns`. No gradient flows
    through the results: they are targets.

    Args:
      log_rhos: [T, B], log pi(a_t | x_t) - log mu(a_t | x_t).
      discounts: [T, B], d_t (0 where the episode ends after step t).
      rewards: [T, B], r_t.
      values: [T, B], V(x_t) under the target policy's value function.
      bootstrap_value: [B], V(x_T).
      clip_rho_threshold: the truncation rhobar of the value targets; None: no clipping.
      clip_pg_rho_threshold: the truncation of the policy-gradient weights; None: none.
      lambda_: the trace's lambda (1 in IMPALA).

    Returns:
      VTraceReturns(vs [T, B], pg_advantages [T, B]).
    """
    log_rhos, discounts, rewards, values, bootstrap_value = (
        tf.convert_to_tensor(x) for x in (log_rhos, discounts, rewards, values, bootstrap_value)
    )
    _check(
        "vtrace",
        log_rhos=log_rhos,
        discounts=discounts,
        rewards=rewards,
        values=values,
        bootstrap_value=bootstrap_value,
    )
    dtype = values.dtype
    rhos = tf.exp(tf.cast(log_rhos, dtype))
    clipped_rhos = rhos if clip_rho_threshold is None else tf.minimum(tf.cast(clip_rho_threshold, dtype), rhos)
    cs = tf.cast(lambda_, dtype) * tf.minimum(tf.ones([], dtype), rhos)
    next_values = tf.concat([values[1:], bootstrap_value[None]], axis=0)
    deltas = clipped_rhos * (rewards + discounts * next_values - values)

    def step(acc, element):
        delta, discount, c = element
        return delta + discount * c * acc

    vs_minus_values = _backward(step, (deltas, discounts, cs), tf.zeros_like(bootstrap_value))
    vs = values + vs_minus_values
    next_vs = tf.concat([vs[1:], bootstrap_value[None]], axis=0)
    pg_rhos = rhos if clip_pg_rho_threshold is None else tf.minimum(tf.cast(clip_pg_rho_threshold, dtype), rhos)
    pg_advantages = pg_rhos * (rewards + discounts * next_vs - values)
    return VTraceReturns(tf.stop_gradient(vs), tf.stop_gradient(pg_advantages))


def lambda_returns(
    rewards: tf.Tensor,
    discounts: tf.Tensor,
    values: tf.Tensor,
    bootstrap_value: tf.Tensor,
    lambda_: float | tf.Tensor,
) -> tf.Tensor:
    r"""TD(lambda) returns (Sutton & Barto, 2018, section 12.1, recursive form).

        G_t = r_t + d_t ((1 - lambda_t) V(x_{t+1}) + lambda_t G_{t+1}),    V(x_T) = G_T = bootstrap_value

    lambda_ = 0 gives one-step TD targets, 1 the discounted Monte-Carlo return
    bootstrapped at T. Gradients flow through `values` and `bootstrap_value`; wrap the
    result in `tf.stop_gradient` to use it as a target.

    Args:
      rewards: [T, B].
      discounts: [T, B].
      values: [T, B], V(x_t).
      bootstrap_value: [B], V(x_T).
      lambda_: a scalar or [T, B].

    Returns:
      G [T, B].
    """
    rewards, discounts, values, bootstrap_value = (
        tf.convert_to_tensor(x) for x in (rewards, discounts, values, bootstrap_value)
    )
    _check("lambda_returns", rewards=rewards, discounts=discounts, values=values, bootstrap_value=bootstrap_value)
    lambdas = tf.broadcast_to(tf.cast(lambda_, values.dtype), tf.shape(rewards))
    next_values = tf.concat([values[1:], bootstrap_value[None]], axis=0)

    def step(next_return, element):
        reward, discount, next_value, lam = element
        return reward + discount * ((1.0 - lam) * next_value + lam * next_return)

    return _backward(step, (rewards, discounts, next_values, lambdas), bootstrap_value)


def upgo_returns(
    rewards: tf.Tensor,
    discounts: tf.Tensor,
    values: tf.Tensor,
    bootstrap_value: tf.Tensor,
) -> tf.Tensor:
    r"""UPGO returns (AlphaStar, Vinyals et al., 2019: "upgoing policy update").

    The lambda return of `lambda_returns` with lambda_t = 1 where the next step did at
    least as well as its value estimate,

        r_{t+1} + d_{t+1} V(x_{t+2}) >= V(x_{t+1})      (V(x_T) = bootstrap_value),

    and 0 elsewhere; lambda_{T-1} = 1. So the return follows the behaviour's actions
    while they kept doing well and bootstraps from the value where they fell below it.

    Args:
      rewards: [T, B].
      discounts: [T, B].
      values: [T, B], V(x_t).
      bootstrap_value: [B], V(x_T).

    Returns:
      G [T, B].
    """
    rewards, discounts, values, bootstrap_value = (
        tf.convert_to_tensor(x) for x in (rewards, discounts, values, bootstrap_value)
    )
    _check("upgo_returns", rewards=rewards, discounts=discounts, values=values, bootstrap_value=bootstrap_value)
    next_values = tf.concat([values[1:], bootstrap_value[None]], axis=0)
    # q_t = r_t + d_t V(x_{t+1}): one step of the behaviour, then the value.
    q = rewards + discounts * next_values
    followed = tf.cast(q[1:] >= values[1:], values.dtype)
    lambdas = tf.concat([followed, tf.ones_like(values[:1])], axis=0)
    return lambda_returns(rewards, discounts, values, bootstrap_value, lambdas)
