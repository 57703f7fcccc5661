"""LayerNorm and GroupNorm: parity with Sonnet, accuracy, NumPy references, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity

FORMATS = ["channels_last", "channels_first"]


def reference(x: np.ndarray, axes: tuple[int, ...], eps: float = 1e-5) -> np.ndarray:
    """Normalisation in float64, the textbook way."""
    x = x.astype(np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def group_reference(x: np.ndarray, groups: int, axes: tuple[int, ...], channels_first: bool) -> np.ndarray:
    """GroupNorm in float64: split the channel axis, normalise, merge back."""
    rank = x.ndim
    if channels_first:
        grouped = x.reshape(x.shape[:1] + (groups, -1) + x.shape[2:])
        axes = tuple(a % rank + 1 if a % rank >= 1 else 0 for a in axes)
    else:
        grouped = x.reshape(x.shape[:-1] + (groups, -1))
        axes = tuple(rank if a % rank == rank - 1 else a % rank for a in axes)
    return reference(grouped, axes).reshape(x.shape)


def random_init(lib):
    return lib.initializers.RandomNormal(mean=1.0, stddev=0.5)


# --- parity with Sonnet -------------------------------------------------------------


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("axis", [-1, 1, slice(1, None), (1, 2), (0, 3)], ids=str)
def test_layer_norm_matches_sonnet(axis, data_format, rng):
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    ours = core.LayerNorm(
        axis, True, True, scale_init=random_init(core), offset_init=random_init(core), data_format=data_format
    )
    theirs = snt.LayerNorm(
        axis, True, True, scale_init=random_init(snt), offset_init=random_init(snt), data_format=data_format
    )
    assert_parity(ours, theirs, [x])


def test_layer_norm_with_call_time_scale_and_offset_matches_sonnet(rng):
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    scale = rng.normal(size=(2, 1, 4)).astype(np.float32)
    offset = rng.normal(size=(2, 1, 4)).astype(np.float32)
    theirs = snt.LayerNorm(slice(1, None), False, False)
    assert_parity(core.LayerNorm(slice(1, None), False, False), theirs, [x, scale, offset])


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("axis", [slice(1, None), (1, 2), 1, 3, (0, 3)], ids=str)
def test_group_norm_matches_sonnet(axis, data_format, rng):
    x = rng.normal(size=(2, 8, 3, 8)).astype(np.float32)
    ours = core.GroupNorm(2, axis, scale_init=random_init(core), offset_init=random_init(core), data_format=data_format)
    theirs = snt.GroupNorm(2, axis, scale_init=random_init(snt), offset_init=random_init(snt), data_format=data_format)
    assert_parity(ours, theirs, [x])


@pytest.mark.parametrize("shape", [(3, 6), (2, 3, 6)])
def test_group_norm_low_rank_matches_sonnet(shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    assert_parity(core.GroupNorm(3), snt.GroupNorm(3), [x])


# --- accuracy and references where Sonnet differs or has nothing to compare --------------


def test_accurate_when_mean_is_large_against_spread(rng):
    # float32 data of mean 1e4 and spread 1. The float64 reference runs on the same float32
    # values, so any difference is the module's own rounding: x*inv - mean*inv (Sonnet's
    # form) is off by ~1e-3 here, a plain two-pass by ~7e-4, ours by ~2e-7.
    x = (1e4 + rng.normal(size=(3, 256))).astype(np.float32)
    out = core.LayerNorm(-1, False, False)(tf.constant(x)).numpy()
    np.testing.assert_allclose(out, reference(x, (1,)), atol=2e-6)
    grouped = core.GroupNorm(2, create_scale=False, create_offset=False)(tf.constant(x.reshape(3, 16, 16))).numpy()
    np.testing.assert_allclose(grouped, group_reference(x.reshape(3, 16, 16), 2, (1, 2), False), atol=2e-6)


def test_nearly_constant_groups_stay_accurate():
    # Two-channel groups whose values nearly coincide: Sonnet's x*inv - mean*inv form is
    # off by ~2e-5 here; centring first keeps ours at float32 rounding.
    x = np.random.RandomState(0).normal(size=(2, 4, 3, 6)).astype(np.float32)
    gn = core.GroupNorm(2, 1, create_scale=False, create_offset=False, data_format="NCHW")
    np.testing.assert_allclose(gn(tf.constant(x)).numpy(), group_reference(x, 2, (1,), True), atol=1e-6)


@pytest.mark.parametrize("axis", [-1, (-2, -1), (1, -1)], ids=str)
def test_group_norm_negative_axes_channels_first(axis, rng):
    # Sonnet maps a negative axis of channels-first inputs onto the wrong grouped axis;
    # ours resolves axes against the input's rank first.
    x = rng.normal(size=(2, 4, 3, 5)).astype(np.float32)
    gn = core.GroupNorm(2, axis, create_scale=False, create_offset=False, data_format="channels_first")
    axes = axis if isinstance(axis, tuple) else (axis,)
    np.testing.assert_allclose(gn(tf.constant(x)).numpy(), group_reference(x, 2, axes, True), atol=1e-5)


def test_group_norm_with_unknown_shapes_matches_eager(rng):
    x = tf.constant(rng.normal(size=(2, 3, 2, 6)).astype(np.float32))
    gn = core.GroupNorm(3)
    eager = gn(x)
    traced = tf.function(gn, input_signature=[tf.TensorSpec([None, None, None, 6], tf.float32)])
    np.testing.assert_allclose(traced(x).numpy(), eager.numpy(), atol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_normalises_in_float32(dtype, rng):
    x = (100 + rng.normal(size=(2, 16))).astype(np.float32)
    ln = core.LayerNorm(-1, True, True)
    out = ln(tf.cast(x, dtype))
    assert out.dtype == dtype and ln.scale.dtype == dtype
    expected = reference(tf.cast(tf.cast(x, dtype), tf.float32).numpy(), (1,))
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), expected, atol=0.02)


def test_float64_parameters_follow_input(rng):
    x = rng.normal(size=(2, 5))
    ln = core.LayerNorm(-1, True, False)
    np.testing.assert_allclose(ln(tf.constant(x)).numpy(), reference(x, (1,)), atol=1e-12)
    assert ln.scale.dtype == tf.float64 and ln.offset is None


# --- errors ---------------------------------------------------------------------------


def test_bad_inputs():
    ln = core.LayerNorm(-1, True, True, name="ln")
    ln(tf.ones([2, 3, 4]))
    with pytest.raises(ValueError, match=r"LayerNorm 'ln': expected inputs of rank 3, got shape \(2, 4\)"):
        ln(tf.ones([2, 4]))
    with pytest.raises(
        ValueError, match=r"LayerNorm 'ln': expected inputs with channel count 4 on axis -1, got shape \(2, 3, 5\)"
    ):
        ln(tf.ones([2, 3, 5]))
    with pytest.raises(TypeError, match=r"LayerNorm 'ln': inputs have dtype float64, but the module works in float32"):
        ln(tf.ones([2, 3, 4], tf.float64))
    with pytest.raises(ValueError, match=r"LayerNorm 'ln': scale given at call time, but create_scale=True"):
        ln(tf.ones([2, 3, 4]), scale=tf.ones([4]))
    with pytest.raises(ValueError, match=r"LayerNorm 'layer_norm': scale_init given but create_scale=False"):
        core.LayerNorm(-1, False, False, scale_init=core.initializers.Ones())
    with pytest.raises(
        ValueError, match=r"LayerNorm 'layer_norm': axis must be an int, a slice or a sequence of ints, got 'x'"
    ):
        core.LayerNorm("x", True, True)
    with pytest.raises(
        ValueError, match=r"LayerNorm 'layer_norm': data_format must be 'channels_first', 'channels_last'"
    ):
        core.LayerNorm(-1, True, True, data_format="HWNC?")
    with pytest.raises(
        ValueError, match=r"LayerNorm 'layer_norm': axis \[3\] out of range for inputs of shape \(2, 3\)"
    ):
        core.LayerNorm(3, True, True)(tf.ones([2, 3]))
    with pytest.raises(ValueError, match=r"LayerNorm 'layer_norm': axis \(1, -1\) repeats an axis"):
        core.LayerNorm((1, -1), True, True)(tf.ones([2, 3]))
    with pytest.raises(TypeError, match=r"LayerNorm 'layer_norm': inputs must be floating point, got dtype int32"):
        core.LayerNorm(-1, True, True)(tf.ones([2, 3], tf.int32))

    gn = core.GroupNorm(2, name="gn")
    with pytest.raises(
        ValueError, match=r"GroupNorm 'gn': 3 channels do not split into 2 groups \(inputs of shape \(2, 3\)\)"
    ):
        gn(tf.ones([2, 3]))
    gn(tf.ones([2, 5, 4]))
    with pytest.raises(
        ValueError, match=r"GroupNorm 'gn': expected inputs with channel count 4 on axis -1, got shape \(2, 5, 6\)"
    ):
        gn(tf.ones([2, 5, 6]))
    with pytest.raises(ValueError, match=r"GroupNorm 'gn': offset given at call time, but create_offset=True"):
        gn(tf.ones([2, 5, 4]), offset=tf.ones([4]))
    with pytest.raises(ValueError, match=r"GroupNorm 'group_norm': groups must be a positive int, got 0"):
        core.GroupNorm(0)
    with pytest.raises(ValueError, match=r"GroupNorm 'group_norm': eps must be a non-negative number, got -1"):
        core.GroupNorm(1, eps=-1)


def test_call_time_scale_and_offset_must_keep_the_inputs_shape():
    ln = core.LayerNorm(-1, False, False, name="ln")
    with pytest.raises(
        ValueError,
        match=r"LayerNorm 'ln': offset of shape \(4, 2, 1\) does not broadcast to the inputs' shape \(2, 3\)",
    ):
        ln(tf.ones([2, 3]), offset=tf.ones([4, 2, 1]))
    with pytest.raises(
        ValueError, match=r"LayerNorm 'ln': scale of shape \(5,\) does not broadcast to the inputs' shape \(2, 3\)"
    ):
        ln(tf.ones([2, 3]), scale=np.ones([5], np.float32))
    gn = core.GroupNorm(3, create_scale=False, create_offset=False, name="gn")
    with pytest.raises(
        ValueError, match=r"GroupNorm 'gn': scale of shape \(5, 1, 1\) does not broadcast to the inputs' shape \(2, 3\)"
    ):
        gn(tf.ones([2, 3]), scale=tf.ones([5, 1, 1]))
    # Per-example values broadcast to the inputs' shape and are fine.
    assert gn(tf.ones([2, 3]), scale=tf.ones([2, 1]), offset=tf.ones([2, 3])).shape == (2, 3)
    conditional = core.GroupNorm(3, create_scale=False, create_offset=False)
    assert conditional(tf.ones([2, 4, 3]), scale=tf.ones([2, 1, 3]), offset=tf.ones([4, 1])).shape == (2, 4, 3)
    assert ln(tf.ones([2, 3]), scale=2.0, offset=tf.ones([2, 1])).shape == (2, 3)


def test_numpy_integers_and_reals_are_accepted(rng):
    x = tf.constant(rng.normal(size=(2, 3, 4)).astype(np.float32))
    ln = core.LayerNorm(np.int64(-1), True, True, eps=np.float32(1e-3))
    np.testing.assert_array_equal(ln(x).numpy(), core.LayerNorm(-1, True, True, eps=float(np.float32(1e-3)))(x).numpy())
    axes = core.LayerNorm((np.int32(1), np.int64(2)), False, False)
    np.testing.assert_array_equal(axes(x).numpy(), core.LayerNorm((1, 2), False, False)(x).numpy())
    gn = core.GroupNorm(np.int64(2), axis=np.int64(-1), eps=np.float64(1e-4))
    np.testing.assert_array_equal(gn(x).numpy(), core.GroupNorm(2, axis=-1, eps=1e-4)(x).numpy())
    with pytest.raises(ValueError, match=r"GroupNorm 'group_norm': groups must be a positive int, got True"):
        core.GroupNorm(True)
    with pytest.raises(
        ValueError, match=r"LayerNorm 'layer_norm': axis must be an int, a slice or a sequence of ints, got True"
    ):
        core.LayerNorm(True, True, True)
    with pytest.raises(ValueError, match=r"LayerNorm 'layer_norm': eps must be a non-negative number, got True"):
        core.LayerNorm(-1, True, True, eps=True)
