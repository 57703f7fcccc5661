"""ExponentialMovingAverage: parity with Sonnet, the debiasing and warm-up maths, replicas, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core


def reference(values, decay, zero_debias=True, warmup_length=0):
    """The averages after each value, in float64."""
    hidden, out = 0.0, []
    for t, v in enumerate(values, 1 - warmup_length):
        d = 0.0 if t <= 0 else decay
        hidden = hidden * d + np.asarray(v, np.float64) * (1 - d)
        out.append(hidden / (1 - d**t) if zero_debias else hidden)
    return out


def test_matches_sonnet(rng):
    values = rng.normal(size=(5, 2, 3)).astype(np.float32)
    ours, theirs = core.ExponentialMovingAverage(0.9), snt.ExponentialMovingAverage(0.9)
    ours.initialize(values[0])
    theirs.initialize(values[0])
    assert core.utils.port_variables(theirs, ours) == [(n, n) for n in ["counter", "hidden", "average"]]
    for v in values:
        np.testing.assert_allclose(ours(v).numpy(), theirs(v).numpy(), rtol=1e-6, atol=1e-7)
        for a, b in zip(ours.variables, theirs.variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.name)
    ours.reset()
    theirs.reset()
    assert [v.numpy().tolist() for v in ours.variables] == [v.numpy().tolist() for v in theirs.variables]


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"zero_debias": False}, {"zero_debias": False, "warmup_length": 2}],
    ids=["debiased", "biased", "warmup"],
)
def test_matches_reference(mode, kwargs, rng):
    values = rng.normal(size=(5, 3))
    ema = core.ExponentialMovingAverage(0.8, **kwargs)
    step = {"eager": ema, "function": tf.function(ema), "xla": tf.function(ema, jit_compile=True)}[mode]
    ema.initialize(tf.constant(values[0]))  # variables exist before tracing
    for got, want in zip([step(tf.constant(v)).numpy() for v in values], reference(values, 0.8, **kwargs)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert ema.counter.numpy() == 5 - kwargs.get("warmup_length", 0)


def test_first_average_is_the_first_value_and_decay_may_be_a_variable():
    decay = tf.Variable(0.5, dtype=tf.float64)
    ema = core.ExponentialMovingAverage(decay)
    np.testing.assert_array_equal(ema(tf.constant([3.0, -1.0], tf.float64)).numpy(), [3.0, -1.0])
    decay.assign(0.0)  # the next value replaces the average
    np.testing.assert_allclose(ema(tf.constant([1.0, 1.0], tf.float64)).numpy(), [1.0, 1.0])


def test_initialize_and_reset():
    ema = core.ExponentialMovingAverage(0.5, zero_debias=False, warmup_length=1)
    assert [v.name for v in ema.variables] == ["exponential_moving_average/counter:0"]
    ema.initialize(tf.zeros([2]))
    np.testing.assert_array_equal(ema.value.numpy(), [0.0, 0.0])
    ema.update(tf.constant([4.0, 2.0]))
    ema.update(tf.constant([0.0, 0.0]))
    np.testing.assert_array_equal(ema.value.numpy(), [2.0, 1.0])
    ema.reset()
    assert ema.counter.numpy() == -1
    np.testing.assert_array_equal(ema(tf.constant([6.0, 6.0])).numpy(), [6.0, 6.0])  # warm-up again


def test_replicas_average_their_values(mirrored):
    with mirrored.scope():
        ema = core.ExponentialMovingAverage(0.5)
    values = [np.full([2], float(i), np.float32) for i in range(4)]
    dist = mirrored.experimental_distribute_values_from_function(lambda ctx: values[ctx.replica_id_in_sync_group])
    mirrored.run(ema.initialize, args=(dist,))
    step = tf.function(lambda x: mirrored.run(ema, args=(x,)))
    step(dist)
    step(dist)
    # Every write is the mean over replicas, so the average is that of the mean value, 1.5.
    for var in ema.variables:
        copies = [c.numpy() for c in mirrored.experimental_local_results(var)]
        assert all(np.array_equal(c, copies[0]) for c in copies), var.name
    np.testing.assert_allclose(mirrored.experimental_local_results(ema.average)[3].numpy(), [1.5, 1.5], rtol=1e-6)
    assert mirrored.experimental_local_results(ema.counter)[2].numpy() == 2


def test_bad_inputs():
    ema = core.ExponentialMovingAverage(0.9, name="ema")
    with pytest.raises(RuntimeError, match=r"ExponentialMovingAverage 'ema': there is no average yet; call update"):
        ema.value
    with pytest.raises(
        TypeError, match=r"ExponentialMovingAverage 'ema': values must be floating point, got dtype int32"
    ):
        ema.update(tf.constant([1, 2]))
    ema.update(tf.ones([2, 3]))
    with pytest.raises(
        ValueError, match=r"'ema': expected values of shape \(2, 3\) \(the shape of the first value\), got"
    ):
        ema.update(tf.ones([3]))
    with pytest.raises(TypeError, match=r"'ema': values have dtype float64, but the module works in float32"):
        ema.update(tf.ones([2, 3], tf.float64))
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.0"):
        core.ExponentialMovingAverage(1.0)
    with pytest.raises(ValueError, match="warmup_length must be a non-negative int, got -1"):
        core.ExponentialMovingAverage(0.9, zero_debias=False, warmup_length=-1)
    with pytest.raises(ValueError, match="no zero start to debias; pass zero_debias=False"):
        core.ExponentialMovingAverage(0.9, warmup_length=3)


def test_positional_arguments_are_sonnets():
    ema = core.ExponentialMovingAverage(0.5, "avg")
    assert ema.name == "avg" and ema.zero_debias
    with pytest.raises(TypeError):
        core.ExponentialMovingAverage(0.5, "avg", False)  # the extras are keyword-only


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("dtype,rtol", [(tf.bfloat16, 1e-2), (tf.float16, 2e-3)], ids=["bfloat16", "float16"])
def test_half_precision_debiases_in_float32(dtype, rtol, mode, rng):
    """0.999 is 1.0 in bfloat16 (1 - decay**t would be 0) and 0.99902 in float16 (a 2.4% skew)."""
    values = tf.cast(rng.normal(1.0, 1.0, size=(5, 3)), dtype)
    ema = core.ExponentialMovingAverage(0.999)
    step = {"eager": ema, "xla": tf.function(ema, jit_compile=True)}[mode]
    ema.initialize(values[0])
    got = [step(v) for v in values]
    assert all(g.dtype == dtype for g in got) and ema.average.dtype == dtype
    want = reference(tf.cast(values, tf.float64).numpy(), 0.999)
    for g, w in zip(got, want):
        np.testing.assert_allclose(tf.cast(g, tf.float64).numpy(), w, rtol=rtol)


def test_numpy_scalars_are_accepted_but_not_bools():
    ema = core.ExponentialMovingAverage(np.float32(0.5), zero_debias=False, warmup_length=np.int64(1))
    assert ema.warmup_length == 1 and ema.counter.numpy() == -1
    ema(tf.constant([4.0]))
    np.testing.assert_array_equal(ema(tf.constant([0.0])).numpy(), [2.0])
    with pytest.raises(
        TypeError, match=r"ExponentialMovingAverage '\w+': decay must be a number or a scalar tensor, got True"
    ):
        core.ExponentialMovingAverage(True)
    with pytest.raises(TypeError, match=r"decay must be a number or a scalar tensor, got '0.9'"):
        core.ExponentialMovingAverage("0.9")
    with pytest.raises(ValueError, match=r"warmup_length must be a non-negative int, got True"):
        core.ExponentialMovingAverage(0.5, zero_debias=False, warmup_length=True)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16], ids=["bfloat16", "float16"])
def test_half_precision_average_keeps_tracking(dtype):
    """A half-precision `hidden` would stall once its steps drop below its resolution (a
    constant 1 averaged to 0.40 in bfloat16 after 1000 steps); it is float32."""
    ema = core.ExponentialMovingAverage(0.999)
    value = tf.constant([1.0, 3.0], dtype)
    ema.initialize(value)
    assert [v.dtype for v in ema.variables] == [tf.int64, tf.float32, dtype]  # counter, hidden, average

    @tf.function
    def run(steps):
        for _ in tf.range(steps):
            ema.update(value)

    run(tf.constant(2000))
    np.testing.assert_array_equal(tf.cast(ema.value, tf.float32).numpy(), [1.0, 3.0])
