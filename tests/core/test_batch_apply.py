"""BatchApply, Reshape, Flatten: parity with Sonnet, nesting, dynamic shapes, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity


@pytest.mark.parametrize("num_dims, shape", [(1, (3, 4)), (2, (2, 3, 4)), (3, (2, 1, 3, 4))])
def test_batch_apply_matches_sonnet(num_dims, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    assert_parity(core.BatchApply(core.Linear(5), num_dims), snt.BatchApply(snt.Linear(5), num_dims), [x])


def test_batch_apply_nested_inputs_and_outputs_match_sonnet(rng):
    def fn(pair, scale, bias=None):
        a, b = pair
        assert a.shape.rank == 2 and b.shape.rank == 3  # [T*B, 3] and [T*B, 2, 2]
        assert isinstance(scale, float)  # non-tensor leaves pass unchanged
        assert bias.shape == ()  # tensors of rank < num_dims pass unchanged
        flat = tf.concat([a, tf.reshape(b, [-1, 4])], -1) * scale + bias
        return {"sum": tf.reduce_sum(flat, -1), "both": (flat, None)}

    a = tf.constant(rng.normal(size=(2, 3, 3)).astype(np.float32))
    b = tf.constant(rng.normal(size=(2, 3, 2, 2)).astype(np.float32))
    ours = core.BatchApply(fn)((a, b), 2.0, bias=tf.constant(0.5))
    theirs = snt.BatchApply(fn)((a, b), 2.0, bias=tf.constant(0.5))
    assert ours["sum"].shape == (2, 3) and ours["both"][0].shape == (2, 3, 7) and ours["both"][1] is None
    for o, t in zip(tf.nest.flatten(ours), tf.nest.flatten(theirs)):
        np.testing.assert_array_equal(o, t)


def test_batch_apply_dynamic_shapes(rng):
    lin = core.Linear(3)
    ba = core.BatchApply(lin)
    fn = tf.function(ba, input_signature=[tf.TensorSpec([None, None, 4])])
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, None, 3]
    x = tf.constant(rng.normal(size=(2, 5, 4)).astype(np.float32))
    # A row of a batched product and the same row alone may take different kernels (GEMM,
    # GEMV) whose sums of 4 terms round differently: about 1e-8 absolute where the terms
    # nearly cancel (seen: -0.00645531 vs -0.00645530), which rtol alone cannot allow.
    np.testing.assert_allclose(fn(x).numpy(), ba(x).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ba(x).numpy()[1, 2], lin(x[1, 2][None]).numpy()[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "output_shape, preserve_dims, shape",
    [
        ((-1,), 1, (2, 3, 4)),
        ((-1, 2), 1, (2, 3, 4)),
        ((4, -1), 2, (2, 3, 4, 2)),
        ((3, 1, 4), 1, (2, 12)),
        ((-1, 2), 4, (2, 1, 3, 4, 2)),
    ],
)
def test_reshape_matches_sonnet(output_shape, preserve_dims, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    # Sonnet refuses `.variables` on a module without any unless told it is stateless.
    theirs = snt.Reshape(output_shape, preserve_dims)
    assert_parity(core.Reshape(output_shape, preserve_dims), theirs, [x])


@pytest.mark.parametrize("preserve_dims", [1, 2])
def test_flatten_matches_sonnet(preserve_dims, rng):
    x = rng.normal(size=(2, 3, 2, 2)).astype(np.float32)
    assert_parity(core.Flatten(preserve_dims), snt.Flatten(preserve_dims), [x])


def test_reshape_dynamic_shapes_and_reversed(rng):
    reshape = core.Reshape((-1, 2))
    x = tf.constant(rng.normal(size=(3, 2, 4)).astype(np.float32))
    y = reshape(x)
    back = reshape.reversed()
    assert back.name == "reshape_reversed" and back.output_shape == (2, 4)
    np.testing.assert_array_equal(back(y).numpy(), x.numpy())
    fn = tf.function(reshape, input_signature=[tf.TensorSpec([None, 2, 4])])
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, 4, 2]
    fn = tf.function(reshape, input_signature=[tf.TensorSpec([None, None, 4])])
    np.testing.assert_array_equal(fn(x).numpy(), y.numpy())
    flat = core.Flatten(name="flat")
    flat(tf.ones([2, 3, 4]))
    assert flat.reversed()(tf.ones([5, 12])).shape == (5, 3, 4)


def test_bad_inputs():
    ba = core.BatchApply(lambda x: tf.reduce_sum(x, 0, keepdims=True), name="fold")
    with pytest.raises(
        ValueError,
        match=(
            r"BatchApply 'fold': expected outputs with leading size 6 "
            r"\(inputs' leading axes \[2, 3\]\), got shape \(1, 4\)"
        ),
    ):
        ba(tf.ones([2, 3, 4]))
    with pytest.raises(ValueError, match=r"BatchApply 'fold': needs at least one tensor input of rank >= num_dims=2"):
        ba(tf.ones([3]))
    with pytest.raises(ValueError, match="num_dims must be a positive int, got 0"):
        core.BatchApply(tf.identity, num_dims=0)
    with pytest.raises(TypeError, match="module must be callable"):
        core.BatchApply(3)

    reshape = core.Reshape((5, -1), name="r")
    with pytest.raises(
        ValueError,
        match=(
            r"Reshape 'r': expected inputs whose axes after the first 1 can "
            r"be reshaped to \[5, -1\], got shape \(2, 3, 4\)"
        ),
    ):
        reshape(tf.ones([2, 3, 4]))
    with pytest.raises(
        ValueError, match=r"Reshape 'r': expected inputs of rank at least 2 \(preserve_dims=2\), got shape \(4,\)"
    ):
        core.Reshape((-1,), preserve_dims=2, name="r")(tf.ones([4]))
    with pytest.raises(ValueError, match=r"output_shape must hold ints >= 0 and at most one -1, got \(-1, -1\)"):
        core.Reshape((-1, -1))
    with pytest.raises(ValueError, match="preserve_dims must be an int >= 1, got 0"):
        core.Flatten(preserve_dims=0)
    with pytest.raises(ValueError, match=r"Reshape 'r2': call the module once before reversed\(\)"):
        core.Reshape((2,), name="r2").reversed()


def test_numpy_integer_arguments():
    ba = core.BatchApply(core.Linear(2), num_dims=np.int64(2))
    assert type(ba.num_dims) is int and ba(tf.ones([2, 3, 4])).shape == (2, 3, 2)
    flat = core.Flatten(np.int32(2))
    assert type(flat.preserve_dims) is int and flat(tf.ones([2, 3, 4, 5])).shape == (2, 3, 20)
    reshape = core.Reshape(np.array([-1, 2]), preserve_dims=np.int64(1))
    assert reshape.output_shape == (-1, 2) and reshape(tf.ones([2, 3, 4])).shape == (2, 6, 2)
    with pytest.raises(ValueError, match="num_dims must be a positive int, got True"):
        core.BatchApply(tf.identity, num_dims=True)
