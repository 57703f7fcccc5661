"""CrossReplicaBatchNorm: one replica equals BatchNorm; many replicas equal batch norm of the whole batch.

The reference is batch norm of the concatenated batch in float64 NumPy: outputs, the
gradient of sum(weights * outputs) with respect to the inputs, and the moving statistics.
"""

import numpy as np
import pytest
import tensorflow as tf

import core

TOL = 1e-5
EPS = 1e-5
DECAY = 0.5


def reference(x, weights, channel_axis, scale=1.0, offset=0.0):
    """Batch statistics, outputs and input gradient of batch norm, in float64."""
    x = x.astype(np.float64)
    axes = tuple(i for i in range(x.ndim) if i != channel_axis % x.ndim)
    mean = x.mean(axes, keepdims=True)
    var = x.var(axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + EPS)
    g = weights * scale  # d loss / d xhat
    grad = (g - g.mean(axes, keepdims=True) - xhat * (g * xhat).mean(axes, keepdims=True)) / np.sqrt(var + EPS)
    n = x.size // x.shape[channel_axis]
    return {"mean": mean, "var": var, "n": n, "y": xhat * scale + offset, "grad": grad}


def moving_reference(batches, unbiased):
    """The debiased moving mean and variance after one update per batch statistics."""
    mean = var = 0.0
    for ref in batches:
        mean = DECAY * mean + (1 - DECAY) * ref["mean"]
        v = ref["var"] * (ref["n"] / (ref["n"] - 1) if unbiased else 1.0)
        var = DECAY * var + (1 - DECAY) * v
    debias = 1 - DECAY ** len(batches)
    return mean / debias, var / debias


def loss_weights(shape, start=0):
    return np.sin(np.arange(start, start + np.prod(shape)) + 1.0).reshape(shape).astype(np.float32)


def make(strategy=None, **kwargs):
    kwargs = {"create_scale": True, "create_offset": True, "decay_rate": DECAY, **kwargs}
    if strategy is None:
        return core.CrossReplicaBatchNorm(**kwargs)
    with strategy.scope():
        return core.CrossReplicaBatchNorm(**kwargs)


def run_replicas(strategy, bn, per_replica, weights, is_training=True):
    """One step on every replica: outputs and input gradients, listed per replica."""

    def distribute(values):
        return strategy.experimental_distribute_values_from_function(lambda ctx: values[ctx.replica_id_in_sync_group])

    def replica_fn(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = bn(x, is_training=is_training)
            loss = tf.reduce_sum(y * w)
        return y, tape.gradient(loss, x)

    step = tf.function(lambda x, w: strategy.run(replica_fn, args=(x, w)))
    ys, grads = step(distribute(per_replica), distribute(weights))
    local = strategy.experimental_local_results
    return [y.numpy() for y in local(ys)], [g.numpy() for g in local(grads)]


def build(strategy, bn, per_replica):
    """Variables are made by an eager call: a traced step that all-reduces cannot make them."""
    dist = strategy.experimental_distribute_values_from_function(lambda ctx: per_replica[ctx.replica_id_in_sync_group])
    strategy.run(lambda x: bn(x, is_training=False), args=(dist,))


def assert_replicas_agree(strategy, bn):
    for var in bn.variables:
        copies = [c.numpy() for c in strategy.experimental_local_results(var)]
        for i, c in enumerate(copies[1:], 1):
            np.testing.assert_array_equal(c, copies[0], err_msg=f"{var.name} differs on replica {i}")


CASES = {  # per-replica batch sizes, the rest of the shape, data_format
    "rank2_equal": ((4, 4, 4, 4), (3,), "channels_last"),
    "rank2_uneven": ((5, 3, 4, 4), (3,), "channels_last"),
    "rank4_uneven": ((5, 3, 4, 4), (2, 2, 3), "channels_last"),
    "rank4_channels_first_uneven": ((2, 1, 3, 2), (3, 2, 2), "channels_first"),
}


@pytest.mark.parametrize("case", CASES)
def test_mirrored_matches_batch_norm_of_the_whole_batch(case, mirrored, rng):
    sizes, rest, data_format = CASES[case]
    channel_axis = -1 if data_format == "channels_last" else 1
    unbiased = len(rest) == 3 and channel_axis == -1
    bn = make(mirrored, data_format=data_format)
    refs = []
    for step in range(2):  # different data per replica and per step
        xs = [rng.normal(0.5 * i, 1.0 + i, size=(n, *rest)).astype(np.float32) for i, n in enumerate(sizes)]
        ws = [loss_weights(x.shape, start=100 * i) for i, x in enumerate(xs)]
        if step == 0:
            build(mirrored, bn, xs)
        ys, grads = run_replicas(mirrored, bn, xs, ws)
        ref = reference(np.concatenate(xs), np.concatenate(ws), channel_axis)
        refs.append(ref)
        np.testing.assert_allclose(np.concatenate(ys), ref["y"], rtol=TOL, atol=TOL)
        np.testing.assert_allclose(np.concatenate(grads), ref["grad"], rtol=TOL, atol=TOL)
    assert_replicas_agree(mirrored, bn)
    mean, var = moving_reference(refs, unbiased)
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), mean, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), var, rtol=TOL, atol=TOL)

    # Inference uses the moving statistics, and runs no collective.
    x = rng.normal(size=(2, *rest)).astype(np.float32)
    ys, _ = run_replicas(mirrored, bn, [x] * 4, [loss_weights(x.shape)] * 4, is_training=False)
    c = channel_axis
    want = (x - mean) / np.sqrt(var + EPS)
    for y in ys:
        np.testing.assert_allclose(y, want, rtol=TOL, atol=TOL, err_msg=f"channel axis {c}")


def test_mirrored_large_mean_stays_accurate(mirrored, rng):
    """Mean 1e4, spread 1, float32: the E[x^2] - E[x]^2 shortcut gets the variance wrong here."""
    bn = make(mirrored)
    xs = [(1e4 + rng.normal(size=(n, 3))).astype(np.float32) for n in (5, 3, 4, 4)]
    ws = [loss_weights(x.shape, start=10 * i) for i, x in enumerate(xs)]
    build(mirrored, bn, xs)
    ys, _ = run_replicas(mirrored, bn, xs, ws)
    ref = reference(np.concatenate(xs), np.concatenate(ws), -1)
    # One debiased update: the moving statistics are the batch's.
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), ref["var"], rtol=1e-3)
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), ref["mean"], rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(ys), ref["y"], atol=1e-2)


def test_mirrored_tensor_flags(mirrored, rng):
    """Tensor flags select without control flow, so the collectives may run in a replica."""
    bn = make(mirrored)
    xs = [rng.normal(i, 1.0, size=(2, 3)).astype(np.float32) for i in range(4)]
    build(mirrored, bn, xs)
    dist = mirrored.experimental_distribute_values_from_function(lambda ctx: xs[ctx.replica_id_in_sync_group])
    step = tf.function(lambda x, t: mirrored.run(lambda x: bn(x, is_training=t), args=(x,)))
    ys = mirrored.experimental_local_results(step(dist, tf.constant(True)))
    ref = reference(np.concatenate(xs), np.ones([8, 3]), -1)
    np.testing.assert_allclose(np.concatenate([y.numpy() for y in ys]), ref["y"], rtol=TOL, atol=TOL)
    before = [v.numpy() for v in bn.variables]
    step(dist, tf.constant(False))
    assert_replicas_agree(mirrored, bn)
    for v, b in zip(bn.variables, before):
        np.testing.assert_array_equal(v.numpy(), b, err_msg=f"{v.name} changed in inference")


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 2, 3)])
def test_one_replica_equals_batch_norm(shape, rng):
    ours, plain = make(), core.BatchNorm(True, True, decay_rate=DECAY)
    for step in range(2):
        x = tf.constant(rng.normal(step, 2.0, size=shape).astype(np.float32))
        results = []
        for bn in (ours, plain):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = bn(x, is_training=True)
                loss = tf.reduce_sum(y * loss_weights(shape))
            results.append((y.numpy(), tape.gradient(loss, x).numpy()))
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(ours.variables, plain.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    np.testing.assert_array_equal(ours(x, is_training=False).numpy(), plain(x, is_training=False).numpy())


def test_one_device_strategy(rng):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    bn = make(strategy)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    w = loss_weights(x.shape)
    build(strategy, bn, [x])
    ys, grads = run_replicas(strategy, bn, [x], [w])
    ref = reference(x, w, -1)
    np.testing.assert_allclose(ys[0], ref["y"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(grads[0], ref["grad"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), ref["var"], rtol=TOL, atol=TOL)


def test_bad_inputs(mirrored):
    bn = make(mirrored, name="xbn")
    x = tf.ones([2, 3])
    with mirrored.scope():
        with pytest.raises(RuntimeError, match=r"CrossReplicaBatchNorm 'xbn': batch statistics need a replica context"):
            bn(x, is_training=True)
        bn(x, is_training=False)  # moving statistics: fine in the cross-replica context
    with pytest.raises(
        ValueError, match=r"CrossReplicaBatchNorm 'xbn': expected inputs with channel count 3 on axis -1"
    ):
        bn(tf.ones([2, 4]), is_training=True)


def test_mirrored_large_mean_over_many_elements(mirrored, rng):
    """The provisional mean's rounding grows with the element count; the correction removes it.

    4096 float32 values of mean 1e4 per channel: a plain two-pass mean is off by ~4e-3;
    the corrected one is within float32's rounding of 1e4 (5e-4).
    """
    bn = make(mirrored, create_scale=False, create_offset=False)
    xs = [(1e4 + rng.normal(size=(1024, 3))).astype(np.float32) for _ in range(4)]
    build(mirrored, bn, xs)
    ys, _ = run_replicas(mirrored, bn, xs, [np.ones_like(x) for x in xs])
    ref = reference(np.concatenate(xs), np.ones([4096, 3]), -1)
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), ref["mean"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), ref["var"], rtol=1e-4)
    np.testing.assert_allclose(np.concatenate(ys), ref["y"], atol=1e-3)


@pytest.mark.parametrize("dtype,atol", [(tf.bfloat16, 3e-2), (tf.float16, 4e-3)], ids=["bfloat16", "float16"])
def test_mirrored_half_precision(dtype, atol, mirrored, rng):
    """Statistics of the whole batch in float32, default decay 0.999 (1.0 in bfloat16)."""
    bn = make(mirrored, decay_rate=0.999)
    xs = [tf.cast(rng.normal(0.5 * i, 1.0 + i, size=(n, 3)), dtype) for i, n in enumerate((3, 2, 2, 1))]
    build(mirrored, bn, xs)
    ys, grads = run_replicas(mirrored, bn, xs, [tf.cast(loss_weights(x.shape), dtype) for x in xs])
    x = np.concatenate([tf.cast(x, tf.float32).numpy() for x in xs])  # the rounded inputs
    ref = reference(x, np.ones_like(x), -1)
    np.testing.assert_allclose(np.concatenate(ys).astype(np.float32), ref["y"], atol=atol)
    assert all(np.all(np.isfinite(g.astype(np.float32))) for g in grads)
    assert_replicas_agree(mirrored, bn)
    # One debiased update: the moving statistics are the batch's, rounded to the dtype.
    for ema, want in [(bn.moving_mean, ref["mean"]), (bn.moving_variance, ref["var"])]:
        assert ema.value.dtype == dtype
        np.testing.assert_allclose(tf.cast(ema.value, tf.float32).numpy(), want, rtol=atol, atol=atol)


CALL_TIME_PARAMS = {  # how scale and offset are given at call time: per channel or per example
    "channel": ("channel", "channel"),
    "example": ("example", "example"),
    "example_scale_channel_offset": ("example", "channel"),
}


@pytest.mark.parametrize("params", CALL_TIME_PARAMS)
def test_mirrored_gradients_with_call_time_scale_and_offset(params, mirrored, rng):
    """Conditional batch norm over replicas: outputs, input gradients and each replica's
    gradients of its scale and offset (of its own loss), against NumPy; and second
    derivatives, against autodiff of the definition, both on the whole batch in float64."""
    sizes, rest = (3, 1, 2, 2), (2, 2, 3)
    bn = make(mirrored, create_scale=False, create_offset=False)
    xs = [rng.normal(0.5 * i, 1.0 + i, size=(n, *rest)).astype(np.float32) for i, n in enumerate(sizes)]
    ws = [loss_weights(x.shape, start=100 * i) for i, x in enumerate(xs)]
    vs = [loss_weights(x.shape, start=1000 + 100 * i) for i, x in enumerate(xs)]
    shared = {what: rng.uniform(0.5, 2.0, size=[3]).astype(np.float32) for what in ("scale", "offset")}
    given = {  # per replica
        what: [
            shared[what] if how == "channel" else rng.uniform(0.5, 2.0, size=[n, 1, 1, 3]).astype(np.float32)
            for n in sizes
        ]
        for what, how in zip(("scale", "offset"), CALL_TIME_PARAMS[params])
    }

    def distribute(values):
        return mirrored.experimental_distribute_values_from_function(lambda ctx: values[ctx.replica_id_in_sync_group])

    def replica_fn(x, w, v, scale, offset):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch([x, scale, offset])
                y = bn(x, is_training=True, scale=scale, offset=offset)
                loss = tf.reduce_sum(y * w)
            grads = inner.gradient(loss, [x, scale, offset])
            second_loss = tf.reduce_sum(grads[0] * v)
        return [y] + grads + [outer.gradient(second_loss, x)]

    args = [distribute(t) for t in (xs, ws, vs, given["scale"], given["offset"])]
    mirrored.run(lambda x, s, o: bn(x, is_training=False, scale=s, offset=o), args=(args[0], *args[3:]))
    results = tf.function(lambda *a: mirrored.run(replica_fn, args=a))(*args)
    y, dx, d_scale, d_offset, d2x = [[t.numpy() for t in mirrored.experimental_local_results(r)] for r in results]

    x, w, v = [np.concatenate(t) for t in (xs, ws, vs)]
    whole = {what: values[0] if values[0].ndim == 1 else np.concatenate(values) for what, values in given.items()}
    ref = reference(x, w, -1, scale=whole["scale"], offset=whole["offset"])
    np.testing.assert_allclose(np.concatenate(y), ref["y"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(np.concatenate(dx), ref["grad"], rtol=TOL, atol=TOL)
    xhat = (x - ref["mean"]) / np.sqrt(ref["var"] + EPS)
    rows = np.split(np.arange(len(x)), np.cumsum(sizes)[:-1])
    for what, got, local_grad in [("scale", d_scale, w * xhat), ("offset", d_offset, w)]:
        for r, (index, value) in enumerate(zip(rows, given[what])):
            axes = (0, 1, 2) if value.ndim == 1 else (1, 2)
            want = local_grad[index].sum(axes, keepdims=value.ndim > 1)
            np.testing.assert_allclose(got[r], want, rtol=TOL, atol=TOL, err_msg=f"d {what}, replica {r}")

    x64 = tf.constant(x, tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(x64)
        with tf.GradientTape() as inner:
            inner.watch(x64)
            mean = tf.reduce_mean(x64, [0, 1, 2], keepdims=True)
            var = tf.reduce_mean(tf.square(x64 - mean), [0, 1, 2], keepdims=True)
            y64 = (x64 - mean) * tf.math.rsqrt(var + EPS) * whole["scale"] + whole["offset"]
            loss = tf.reduce_sum(y64 * w)
        second_loss = tf.reduce_sum(inner.gradient(loss, x64) * v)
    np.testing.assert_allclose(np.concatenate(d2x), outer.gradient(second_loss, x64).numpy(), rtol=1e-4, atol=1e-4)
