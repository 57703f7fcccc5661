"""Conv1D, Conv2D, Conv3D: parity with Sonnet, a NumPy reference, init scale, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity

CASES = [
    # (ours, sonnet's, constructor kwargs, input shape)
    (core.Conv1D, snt.Conv1D, dict(output_channels=3, kernel_shape=3), (2, 6, 2)),
    (core.Conv1D, snt.Conv1D, dict(output_channels=3, kernel_shape=3, stride=2, padding="VALID"), (2, 7, 2)),
    (core.Conv1D, snt.Conv1D, dict(output_channels=2, kernel_shape=3, rate=2, data_format="NCW"), (2, 2, 7)),
    (core.Conv1D, snt.Conv1D, dict(output_channels=2, kernel_shape=2, padding=snt.pad.causal), (1, 5, 3)),
    (core.Conv2D, snt.Conv2D, dict(output_channels=3, kernel_shape=3), (2, 5, 5, 2)),
    (
        core.Conv2D,
        snt.Conv2D,
        dict(output_channels=3, kernel_shape=(3, 2), stride=(2, 1), with_bias=False),
        (1, 5, 4, 2),
    ),
    (core.Conv2D, snt.Conv2D, dict(output_channels=2, kernel_shape=3, rate=2, padding="VALID"), (1, 6, 6, 2)),
    (core.Conv2D, snt.Conv2D, dict(output_channels=2, kernel_shape=3, stride=2, data_format="NCHW"), (1, 2, 5, 5)),
    (
        core.Conv2D,
        snt.Conv2D,
        dict(output_channels=2, kernel_shape=3, padding=[snt.pad.full, snt.pad.reverse_causal]),
        (1, 4, 4, 1),
    ),
    (core.Conv3D, snt.Conv3D, dict(output_channels=2, kernel_shape=2), (1, 3, 3, 3, 2)),
    (core.Conv3D, snt.Conv3D, dict(output_channels=2, kernel_shape=3, stride=2, data_format="NCDHW"), (1, 2, 4, 4, 4)),
]


@pytest.mark.onednn  # channels first and dilations take the path the device's kernels allow
@pytest.mark.parametrize(
    "ours, theirs, kwargs, shape", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)]
)
def test_matches_sonnet(ours, theirs, kwargs, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    assert_parity(ours(**kwargs), theirs(**kwargs), [x], call_theirs=sonnet_call(kwargs, len(shape) - 2))


def sonnet_call(kwargs: dict, num_spatial: int, transposed: bool = False):
    """How to call a Sonnet convolution made with `kwargs`: directly, or compiled with XLA
    (which takes every layout and dilation) where this device has no kernel for it:
    Sonnet has no fallback of its own."""
    data_format = kwargs.get("data_format", core.conv.DATA_FORMATS[num_spatial][0])
    dilated = transposed and kwargs.get("rate", 1) != 1
    if not (
        core.conv.runs_natively(num_spatial, tf.float32, data_format)
        and (not dilated or core.conv.runs_natively(num_spatial, tf.float32, data_format, dilated_transpose=True))
    ):
        return lambda module, x: tf.function(module, jit_compile=True)(x)
    return None


def test_conv1d_matches_numpy_cross_correlation(rng):
    x = rng.normal(size=(2, 6, 3))
    w = rng.normal(size=(3, 3, 4))
    conv = core.Conv1D(4, 3, padding="VALID", w_init=core.initializers.Constant(0.0))
    conv(tf.constant(x))
    conv.w.assign(w)
    conv.b.assign(np.arange(4.0))
    # out[b, t, o] = sum_{k, i} x[b, t + k, i] w[k, i, o] + bias[o]
    expected = np.stack([np.einsum("bki,kio->bo", x[:, t : t + 3], w) for t in range(4)], axis=1) + np.arange(4.0)
    np.testing.assert_allclose(conv(tf.constant(x)).numpy(), expected, rtol=1e-12)
    assert conv.w.dtype == tf.float64  # parameters follow the input dtype


def test_variable_shapes_and_default_init():
    conv = core.Conv2D(200, (3, 5), data_format="NCHW")
    conv(tf.zeros([1, 40, 6, 6]))
    assert conv.w.shape == (3, 5, 40, 200) and conv.b.shape == (200,)
    # TruncatedNormal(stddev=1/sqrt(3 * 5 * 40)) has standard deviation 0.8796 of that.
    assert conv.w.numpy().std() == pytest.approx(0.87962566 / np.sqrt(600), rel=0.02)
    assert np.all(conv.b.numpy() == 0)


def test_dynamic_batch_and_spatial_sizes_under_tf_function(rng):
    conv = core.Conv2D(2, 3, stride=2)
    fn = tf.function(conv, input_signature=[tf.TensorSpec([None, None, None, 3])])
    for shape in [(1, 5, 5, 3), (2, 8, 6, 3)]:
        x = tf.constant(rng.normal(size=shape).astype(np.float32))
        np.testing.assert_allclose(fn(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    conv = core.Conv2D(3, 3, name="c")
    with pytest.raises(
        ValueError, match=r"Conv2D 'c': expected inputs of rank 4 \[N, H, W, C\], got shape \(2, 5, 2\)"
    ):
        conv(tf.ones([2, 5, 2]))
    conv(tf.ones([1, 4, 4, 2]))
    with pytest.raises(
        ValueError, match=r"Conv2D 'c': expected inputs with input channels 2 on axis -1, got shape \(1, 4, 4, 3\)"
    ):
        conv(tf.ones([1, 4, 4, 3]))
    with pytest.raises(TypeError, match=r"Conv2D 'c': inputs have dtype float64, but the module works in float32"):
        conv(tf.ones([1, 4, 4, 2], tf.float64))
    with pytest.raises(ValueError, match=r"Conv1D 'conv1_d': expected inputs with input channels 2 on axis 1"):
        c1 = core.Conv1D(2, 2, data_format="NCW")
        c1(tf.ones([1, 2, 5]))
        c1(tf.ones([1, 3, 5]))
    with pytest.raises(TypeError, match=r"Conv3D 'conv3_d': inputs must be floating point, got dtype int32"):
        core.Conv3D(2, 2)(tf.ones([1, 2, 2, 2, 1], tf.int32))
    with pytest.raises(
        ValueError, match=r"kernel_shape must be a positive int or a sequence of 1 or 2 positive ints, got \(3, 3, 3\)"
    ):
        core.Conv2D(2, (3, 3, 3))
    with pytest.raises(ValueError, match=r"data_format must be one of \('NHWC', 'NCHW'\), got 'NWC'"):
        core.Conv2D(2, 3, data_format="NWC")
    with pytest.raises(
        ValueError, match=r"padding must be 'SAME', 'VALID', a function or a sequence of functions, got 'CAUSAL'"
    ):
        core.Conv1D(2, 3, padding="CAUSAL")
    with pytest.raises(ValueError, match=r"padding must be .* a sequence of 1 or 3 functions"):
        core.Conv3D(2, 3, padding=[snt.pad.same, snt.pad.same])
    with pytest.raises(ValueError, match="TensorFlow cannot combine stride > 1 with rate > 1"):
        core.Conv2D(2, 3, stride=2, rate=2)
    with pytest.raises(ValueError, match="output_channels must be a positive int, got 0"):
        core.Conv2D(0, 3)
    with pytest.raises(ValueError, match="b_init given but with_bias=False"):
        core.Conv2D(2, 3, with_bias=False, b_init=core.initializers.Zeros())


def test_numpy_integer_arguments():
    conv = core.Conv2D(np.int64(2), np.array([3, 1]), stride=np.int32(2), rate=np.array(1))
    assert type(conv.output_channels) is int and conv.output_channels == 2
    assert conv.kernel_shape == (3, 1) and all(type(k) is int for k in conv.kernel_shape + conv.stride + conv.rate)
    assert conv(tf.ones([1, 4, 4, 1])).shape == (1, 2, 2, 2)
    assert core.Conv1D(np.uint8(2), (np.int64(2),))(tf.ones([1, 3, 1])).shape == (1, 3, 2)
    with pytest.raises(ValueError, match="output_channels must be a positive int, got True"):
        core.Conv2D(True, 3)
    with pytest.raises(ValueError, match=r"kernel_shape must be a positive int .* got array\(\[3, 0\]\)"):
        core.Conv2D(2, np.array([3, 0]))


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_valid_kernel_larger_than_input(mode):
    def run(module, x):
        fn = {"eager": module, "function": tf.function(module), "xla": tf.function(module, jit_compile=True)}[mode]
        return fn(x)

    # Eagerly, TensorFlow's CPU kernel returns a wrongly shaped result here without the check.
    conv = core.Conv2D(2, 3, padding="VALID", with_bias=False, name="c")
    with pytest.raises(
        ValueError,
        match=(
            r"Conv2D 'c': kernel_shape \(3, 3\) with padding 'VALID' needs inputs of "
            r"size at least 3 on axis 1, got shape \(1, 2, 5, 1\)"
        ),
    ):
        run(conv, tf.ones([1, 2, 5, 1]))
    dilated = core.Conv2D(2, 2, rate=2, padding="VALID", data_format="NCHW", name="d")
    with pytest.raises(
        ValueError,
        match=r"Conv2D 'd': kernel_shape \(2, 2\) at rate \(2, 2\) .* at least 3 on axis 3, got shape \(1, 1, 5, 2\)",
    ):
        run(dilated, tf.ones([1, 1, 5, 2]))
    padded = core.Conv1D(2, 3, padding=lambda k: [1, 0], name="p")
    with pytest.raises(
        ValueError,
        match=(
            r"Conv1D 'p': kernel_shape \(3,\) with padding the padding functions "
            r"\(then 'VALID'\) needs inputs of size at least 2 on axis 1"
        ),
    ):
        run(padded, tf.ones([1, 1, 2]))
    # Inputs just large enough still work.
    assert run(conv, tf.ones([1, 3, 3, 1])).shape == (1, 1, 1, 2)
    assert run(padded, tf.ones([1, 2, 2])).shape == (1, 1, 2)
