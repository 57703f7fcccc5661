"""Linear: maths, parity with Sonnet, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 5)])
def test_matches_sonnet(with_bias, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    assert_parity(core.Linear(4, with_bias=with_bias), snt.Linear(4, with_bias=with_bias), [x])


def test_computes_affine_map(rng):
    x = rng.normal(size=(3, 5))
    lin = core.Linear(2, w_init=core.initializers.Constant(0.5), b_init=core.initializers.Constant(-1.0))
    np.testing.assert_allclose(lin(tf.constant(x)).numpy(), x @ np.full((5, 2), 0.5) - 1.0, rtol=1e-12)
    assert lin.w.dtype == tf.float64  # parameters follow the input dtype


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_integer_inputs_compute_in_integers_as_in_sonnet(dtype):
    x = tf.constant([[1, 2], [3, -4]], dtype)
    ours = core.Linear(3, w_init=core.initializers.Constant(2), b_init=core.initializers.Constant(1))
    theirs = snt.Linear(3, w_init=snt.initializers.Constant(2), b_init=snt.initializers.Constant(1))
    got, want = ours(x), theirs(x)
    assert got.dtype == want.dtype == dtype and ours.w.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(got.numpy(), [[7, 7, 7], [-1, -1, -1]])


def test_default_init_scale(rng):
    lin = core.Linear(2000)
    lin(tf.zeros([1, 400]))
    # TruncatedNormal(stddev=1/sqrt(400)) has standard deviation 0.05 * 0.8796.
    assert lin.w.numpy().std() == pytest.approx(0.05 * 0.87962566, rel=0.01)
    assert np.all(lin.b.numpy() == 0)


def test_bad_inputs():
    lin = core.Linear(3, name="proj")
    with pytest.raises(ValueError, match=r"Linear 'proj': expected inputs of rank at least 2 .* got shape \(4,\)"):
        lin(tf.ones([4]))
    lin(tf.ones([2, 4]))
    with pytest.raises(
        ValueError, match=r"Linear 'proj': expected inputs with input size 4 on axis -1, got shape \(2, 5\)"
    ):
        lin(tf.ones([2, 5]))
    with pytest.raises(TypeError, match=r"Linear 'proj': inputs have dtype float64, but the module works in float32"):
        lin(tf.ones([2, 4], tf.float64))
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        core.Linear(0)
    with pytest.raises(ValueError, match="b_init given but with_bias=False"):
        core.Linear(2, with_bias=False, b_init=core.initializers.Zeros())
    with pytest.raises(TypeError, match=r"Linear 'linear': integer inputs \(int32\) need an integer-valued w_init"):
        core.Linear(2)(tf.ones([2, 2], tf.int32))
    with pytest.raises(TypeError, match=r"Linear 'linear': inputs must be floating point or integer, got dtype bool"):
        core.Linear(2, w_init=core.initializers.Zeros())(tf.ones([2, 2], tf.bool))


def test_numpy_integer_sizes():
    lin = core.Linear(np.int64(3))
    assert type(lin.output_size) is int and lin.output_size == 3
    assert lin(tf.ones([2, 4])).shape == (2, 3)
    with pytest.raises(ValueError, match=r"Linear 'linear': output_size must be a positive int, got True"):
        core.Linear(True)
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        core.Linear(np.int32(0))
