"""Learning-rate schedules: closed-form values, modes, errors."""

import math

import numpy as np
import pytest
import tensorflow as tf

from core.optimizers import schedules

STEPS = [0, 1, 2, 3, 4, 5, 7, 10, 11, 20, 1000]


def closed_form(schedule, step):
    """Each schedule's formula, in plain Python floats."""
    if isinstance(schedule, schedules.ConstantWithLinearWarmup):
        if schedule.warmup_steps == 0:
            return schedule.value
        frac = min(step, schedule.warmup_steps) / schedule.warmup_steps
        return schedule.initial_value + (schedule.value - schedule.initial_value) * frac
    if isinstance(schedule, schedules.LinearDecay):
        frac = min(step, schedule.decay_steps) / schedule.decay_steps
        return schedule.initial_value + (schedule.final_value - schedule.initial_value) * frac
    if isinstance(schedule, schedules.ExponentialDecay):
        exponent = step / schedule.decay_steps
        if schedule.staircase:
            exponent = math.floor(exponent)
        return schedule.initial_value * schedule.decay_rate**exponent
    if isinstance(schedule, schedules.PiecewiseConstant):
        return schedule.values[sum(step > b for b in schedule.boundaries)]
    if isinstance(schedule, schedules.CosineDecay):
        if step < schedule.warmup_steps:
            return schedule.initial_value * step / schedule.warmup_steps
        s = min(step - schedule.warmup_steps, schedule.decay_steps) / schedule.decay_steps
        return schedule.initial_value * ((1 - schedule.alpha) * 0.5 * (1 + math.cos(math.pi * s)) + schedule.alpha)
    raise TypeError(schedule)


SCHEDULES = {
    "warmup": schedules.ConstantWithLinearWarmup(0.1, warmup_steps=4),
    "warmup_from": schedules.ConstantWithLinearWarmup(1.0, warmup_steps=10, initial_value=0.5),
    "no_warmup": schedules.ConstantWithLinearWarmup(0.3, warmup_steps=0),
    "linear_decay": schedules.LinearDecay(5e-4, 5e-5, decay_steps=10),
    "exponential": schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5),
    "exponential_staircase": schedules.ExponentialDecay(2.0, decay_steps=4, decay_rate=0.1, staircase=True),
    "piecewise": schedules.PiecewiseConstant([2, 5, 10], [1.0, 0.5, 0.25, 0.125]),
    "cosine": schedules.CosineDecay(0.1, decay_steps=10),
    "cosine_floor_warmup": schedules.CosineDecay(1.0, decay_steps=8, alpha=0.1, warmup_steps=3),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_closed_form(name):
    schedule = SCHEDULES[name]
    for step in STEPS:
        expected = closed_form(schedule, step)
        for arg in (step, tf.constant(step, tf.int64), tf.constant(step)):
            value = schedule(arg)
            assert value.dtype == tf.float32 and value.shape == ()
            np.testing.assert_allclose(value.numpy(), expected, rtol=1e-6, atol=1e-9, err_msg=f"step {step}")


def test_piecewise_boundaries_belong_to_the_left():
    schedule = schedules.PiecewiseConstant([2, 5], [1.0, 2.0, 3.0])
    assert [float(schedule(s)) for s in range(7)] == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0]


def test_known_values():
    assert float(schedules.ConstantWithLinearWarmup(0.1, 4)(0)) == 0.0
    assert float(schedules.ConstantWithLinearWarmup(0.1, 4)(2)) == pytest.approx(0.05)
    assert float(schedules.CosineDecay(0.1, 10)(5)) == pytest.approx(0.05)
    assert float(schedules.CosineDecay(0.1, 10)(10)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedules.ExponentialDecay(1.0, 10, 0.5)(20)) == pytest.approx(0.25)


@pytest.mark.parametrize("jit", [False, True], ids=["function", "xla"])
def test_traced_values_match_eager(jit):
    steps = tf.constant(STEPS, tf.int64)
    for name, schedule in SCHEDULES.items():
        traced = tf.function(lambda s, f=schedule: tf.map_fn(f, s, fn_output_signature=tf.float32), jit_compile=jit)
        np.testing.assert_allclose(
            traced(steps).numpy(), [schedule(s).numpy() for s in STEPS], rtol=1e-6, atol=1e-9, err_msg=name
        )


def test_numpy_scalars_are_numbers():
    pairs = [
        (
            schedules.CosineDecay(np.float32(0.5), np.int64(8), np.float64(0.25), np.int32(2)),
            schedules.CosineDecay(0.5, 8, 0.25, 2),
        ),
        (
            schedules.PiecewiseConstant([np.int64(2)], [np.float32(0.5), 0.25]),
            schedules.PiecewiseConstant([2], [0.5, 0.25]),
        ),
    ]
    for ours, plain in pairs:
        for step in STEPS:
            assert float(ours(step)) == pytest.approx(float(plain(step)), rel=1e-7)


def test_repr():
    assert repr(SCHEDULES["cosine_floor_warmup"]) == (
        "CosineDecay(initial_value=1.0, decay_steps=8, alpha=0.1, warmup_steps=3)"
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"ConstantWithLinearWarmup: warmup_steps must be an int >= 0, got -1"):
        schedules.ConstantWithLinearWarmup(0.1, -1)
    with pytest.raises(TypeError, match=r"ConstantWithLinearWarmup: value must be a finite number, got 'a'"):
        schedules.ConstantWithLinearWarmup("a", 1)
    with pytest.raises(ValueError, match=r"LinearDecay: decay_steps must be an int >= 1, got 0"):
        schedules.LinearDecay(1.0, 0.1, 0)
    with pytest.raises(ValueError, match=r"ExponentialDecay: decay_rate must be > 0, got 0"):
        schedules.ExponentialDecay(0.1, 10, 0)
    with pytest.raises(TypeError, match=r"ExponentialDecay: staircase must be a bool"):
        schedules.ExponentialDecay(0.1, 10, 0.5, staircase=1)
    with pytest.raises(ValueError, match=r"PiecewiseConstant: needs one more value than boundaries, got 2 values"):
        schedules.PiecewiseConstant([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"PiecewiseConstant: boundaries must increase strictly, got \[3, 3\]"):
        schedules.PiecewiseConstant([3, 3], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"PiecewiseConstant: each boundary must be an int >= 0, got 1.5"):
        schedules.PiecewiseConstant([1.5], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"CosineDecay: alpha must be in \[0.0, 1.0\], got 2"):
        schedules.CosineDecay(0.1, 10, alpha=2)
    with pytest.raises(TypeError, match=r"CosineDecay: initial_value must be a finite number, got inf"):
        schedules.CosineDecay(float("inf"), 10)
