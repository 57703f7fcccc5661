"""Conv1DTranspose, Conv2DTranspose, Conv3DTranspose: parity with Sonnet, shapes, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity
from tests.core.test_conv import sonnet_call

CASES = [
    # (ours, sonnet's, constructor kwargs, input shape)
    (core.Conv1DTranspose, snt.Conv1DTranspose, dict(output_channels=3, kernel_shape=3, stride=2), (2, 4, 2)),
    (
        core.Conv1DTranspose,
        snt.Conv1DTranspose,
        dict(output_channels=2, kernel_shape=3, rate=2, data_format="NCW"),
        (1, 2, 5),
    ),
    (
        core.Conv2DTranspose,
        snt.Conv2DTranspose,
        dict(output_channels=3, kernel_shape=3, stride=2, padding="VALID"),
        (1, 3, 3, 2),
    ),
    (
        core.Conv2DTranspose,
        snt.Conv2DTranspose,
        dict(output_channels=2, kernel_shape=(3, 2), output_shape=(5, 6), stride=2),
        (2, 3, 3, 2),
    ),
    (
        core.Conv2DTranspose,
        snt.Conv2DTranspose,
        dict(output_channels=2, kernel_shape=3, stride=2, with_bias=False, data_format="NCHW"),
        (1, 2, 3, 3),
    ),
    (core.Conv3DTranspose, snt.Conv3DTranspose, dict(output_channels=2, kernel_shape=2, stride=2), (1, 2, 2, 2, 2)),
    # Channels last at rate 2: TensorFlow's CPU kernels have no dilated transposed convolution.
    (core.Conv2DTranspose, snt.Conv2DTranspose, dict(output_channels=2, kernel_shape=3, rate=2), (1, 4, 3, 2)),
    (
        core.Conv3DTranspose,
        snt.Conv3DTranspose,
        dict(output_channels=2, kernel_shape=2, rate=2, padding="VALID"),
        (1, 2, 3, 2, 1),
    ),
    (
        core.Conv3DTranspose,
        snt.Conv3DTranspose,
        dict(output_channels=2, kernel_shape=2, output_shape=(3, 3, 3), padding="VALID", data_format="NCDHW"),
        (1, 2, 2, 2, 2),
    ),
]


@pytest.mark.onednn  # channels first and dilations take the path the device's kernels allow
@pytest.mark.parametrize(
    "ours, theirs, kwargs, shape", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)]
)
def test_matches_sonnet(ours, theirs, kwargs, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    assert_parity(ours(**kwargs), theirs(**kwargs), [x], call_theirs=sonnet_call(kwargs, len(shape) - 2, True))


def test_is_the_gradient_of_the_convolution(rng):
    """<conv(y), x> == <y, conv_transpose(x)> when both share the kernel."""
    x = tf.constant(rng.normal(size=(2, 3, 3, 4)))
    y = tf.constant(rng.normal(size=(2, 6, 6, 2)))
    tconv = core.Conv2DTranspose(2, 3, stride=2, with_bias=False)
    conv = core.Conv2D(4, 3, stride=2, with_bias=False)
    tconv(x)
    conv(y)
    conv.w.assign(tconv.w)  # [3, 3, in=2, out=4] for the convolution is [3, 3, out=2, in=4] transposed
    lhs = tf.reduce_sum(conv(y) * x)
    rhs = tf.reduce_sum(y * tconv(x))
    np.testing.assert_allclose(lhs.numpy(), rhs.numpy(), rtol=1e-10)


@pytest.mark.parametrize("padding, stride, expected", [("SAME", 2, 8), ("VALID", 2, 10), ("VALID", 1, 6)])
def test_default_output_size(padding, stride, expected):
    # As Sonnet: SAME gives in * stride; VALID gives in * stride + kernel - 1.
    out = core.Conv1DTranspose(1, 3, stride=stride, padding=padding)(tf.ones([1, 4, 1]))
    assert out.shape == (1, expected, 1)


def test_variables_and_default_init():
    tconv = core.Conv2DTranspose(300, 3)
    tconv(tf.zeros([1, 2, 2, 50]))
    assert tconv.w.shape == (3, 3, 300, 50) and tconv.b.shape == (300,)
    # Sonnet's fan in: kernel size times input channels.
    assert tconv.w.numpy().std() == pytest.approx(0.87962566 / np.sqrt(9 * 50), rel=0.02)


def test_dynamic_shapes_under_tf_function(rng):
    tconv = core.Conv2DTranspose(2, 3, stride=2, padding="VALID")
    fn = tf.function(tconv, input_signature=[tf.TensorSpec([None, None, None, 1])])
    for shape in [(1, 2, 3, 1), (2, 3, 3, 1)]:
        x = tf.constant(rng.normal(size=shape).astype(np.float32))
        out = fn(x)
        assert out.shape == (shape[0], 2 * shape[1] + 2, 2 * shape[2] + 2, 2)
        np.testing.assert_allclose(out.numpy(), tconv(x).numpy(), rtol=1e-5, atol=1e-6)


def test_output_shape_with_unknown_spatial_sizes_under_tf_function(rng):
    tconv = core.Conv2DTranspose(2, 3, output_shape=(7, 6), stride=2)
    fn = tf.function(tconv, input_signature=[tf.TensorSpec([None, None, None, 1])])
    x = tf.constant(rng.normal(size=(2, 4, 3, 1)).astype(np.float32))
    assert fn(x).shape == (2, 7, 6, 2)
    np.testing.assert_allclose(fn(x).numpy(), tconv(x).numpy(), rtol=1e-5, atol=1e-6)


def test_numpy_integers_are_ints(rng):
    x = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
    ours = core.Conv2DTranspose(
        np.int64(3), np.array([3, 2]), output_shape=np.array([5, 6]), stride=(np.int32(2), 2), rate=np.int64(1)
    )
    assert ours.output_channels == 3 and ours.kernel_shape == (3, 2) and ours.output_shape == (5, 6)
    assert type(ours.output_channels) is int
    assert_parity(ours, snt.Conv2DTranspose(3, (3, 2), output_shape=(5, 6), stride=2), [x])


def test_bad_inputs():
    tconv = core.Conv2DTranspose(3, 3, output_shape=(8, 8), stride=2, name="up")
    with pytest.raises(
        ValueError,
        match=r"Conv2DTranspose 'up': output_shape \[8, 8\] with stride \[2, 2\] and SAME padding needs inputs "
        r"of spatial size \[4, 4\], got shape \(1, 5, 5, 2\)",
    ):
        tconv(tf.ones([1, 5, 5, 2]))
    tconv(tf.ones([1, 4, 4, 2]))
    # Checked on every call, not only the first (TensorFlow's own error is opaque).
    with pytest.raises(
        ValueError,
        match=r"Conv2DTranspose 'up': output_shape \[8, 8\] with stride \[2, 2\] and SAME padding needs inputs "
        r"of spatial size \[4, 4\], got shape \(1, 3, 4, 2\)",
    ):
        tconv(tf.ones([1, 3, 4, 2]))
    with pytest.raises(
        ValueError,
        match=(
            r"Conv1DTranspose 'down': output_shape \[7\] with stride \[2\] and VALID "
            r"padding needs inputs of spatial size \[3\], got shape \(2, 1, 4\)"
        ),
    ):
        narrow = core.Conv1DTranspose(1, 2, output_shape=7, stride=2, padding="VALID", data_format="NCW", name="down")
        narrow(tf.ones([2, 1, 3]))
        narrow(tf.ones([2, 1, 4]))
    with pytest.raises(
        ValueError,
        match=r"Conv2DTranspose 'up': expected inputs with input channels 2 on axis -1, got shape \(1, 4, 4, 1\)",
    ):
        tconv(tf.ones([1, 4, 4, 1]))
    with pytest.raises(
        ValueError, match=r"Conv2DTranspose 'up': expected inputs of rank 4 \[N, H, W, C\], got shape \(4, 4, 2\)"
    ):
        tconv(tf.ones([4, 4, 2]))
    with pytest.raises(
        TypeError, match=r"Conv2DTranspose 'up': inputs have dtype float16, but the module works in float32"
    ):
        tconv(tf.ones([1, 4, 4, 2], tf.float16))
    with pytest.raises(ValueError, match=r"padding must be 'SAME' or 'VALID', got <function"):
        core.Conv1DTranspose(2, 3, padding=snt.pad.causal)
    with pytest.raises(
        ValueError, match=r"output_shape must be a positive int or a sequence of 1 or 3 positive ints, got \[4, 4\]"
    ):
        core.Conv3DTranspose(2, 3, output_shape=[4, 4])
    with pytest.raises(ValueError, match=r"data_format must be one of \('NDHWC', 'NCDHW'\), got 'NHWC'"):
        core.Conv3DTranspose(2, 3, data_format="NHWC")
