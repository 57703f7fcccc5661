"""MultiHeadAttention: a NumPy reference, masking, equivariance, no NaNs, errors."""

import numpy as np
import pytest
import tensorflow as tf

import core

MODES = {
    "eager": lambda f: f,
    "function": tf.function,
    "xla": lambda f: tf.function(f, jit_compile=True),
}


def reference(mha: core.MultiHeadAttention, query, key, value, key_mask):
    """The module's maths in float64 NumPy, with the module's weights.

    Returns (outputs [B, Tq, model_size], weights [B, H, Tq, Tk]).
    """

    def project(linear, x):
        y = x.astype(np.float64) @ linear.w.numpy().astype(np.float64)
        return y + linear.b.numpy() if linear.with_bias else y

    def heads(x, size):
        b, t, _ = x.shape
        return x.reshape(b, t, mha.num_heads, size).transpose(0, 2, 1, 3)

    q = heads(project(mha.query_proj, query), mha.key_size)
    k = heads(project(mha.key_proj, key), mha.key_size)
    v = heads(project(mha.value_proj, value), mha.value_size)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(mha.key_size)
    allowed = np.ones(logits.shape, bool) if key_mask is None else key_mask[:, None, None, :]
    allowed = np.broadcast_to(allowed, logits.shape)
    logits = np.where(allowed, logits, -np.inf)
    top = logits.max(axis=-1, keepdims=True)
    e = np.where(allowed, np.exp(logits - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], -1)
    return project(mha.output_proj, mixed), weights


def init(seed):
    return core.initializers.RandomNormal(stddev=0.5, seed=seed)


CASES = {
    # name: (constructor kwargs, query shape, key shape or None, value shape or None, mask)
    "self_masked": (
        dict(num_heads=2, key_size=3),
        (2, 4, 5),
        None,
        None,
        [[True, False, True, True], [True, True, True, False]],
    ),
    "self_nomask": (dict(num_heads=3, key_size=2), (2, 3, 4), None, None, None),
    "cross_sizes": (
        dict(num_heads=2, key_size=3, value_size=4, model_size=6, with_bias=False),
        (2, 3, 5),
        (2, 4, 7),
        (2, 4, 2),
        [[True, True, False, True], [False, True, False, False]],
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_reference(case, mode, rng):
    kwargs, q_shape, k_shape, v_shape, mask = CASES[case]
    query = rng.normal(size=q_shape).astype(np.float32)
    key = rng.normal(size=k_shape).astype(np.float32) if k_shape else None
    value = rng.normal(size=v_shape).astype(np.float32) if v_shape else None
    mask = None if mask is None else np.array(mask)
    b_init = init(2) if kwargs.get("with_bias", True) else None
    mha = core.MultiHeadAttention(**kwargs, w_init=init(1), b_init=b_init)
    as_tensor = lambda x: None if x is None else tf.constant(x)  # noqa: E731
    outputs = MODES[mode](lambda q, k, v, m: mha(q, k, v, key_mask=m))(*map(as_tensor, (query, key, value, mask)))
    weights = MODES[mode](lambda q, k, m: mha.attention_weights(q, k, key_mask=m))(*map(as_tensor, (query, key, mask)))
    key = query if key is None else key
    expected_out, expected_weights = reference(mha, query, key, key if value is None else value, mask)
    assert outputs.shape == expected_out.shape
    np.testing.assert_allclose(outputs.numpy(), expected_out, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(weights.numpy(), expected_weights, atol=1e-5, rtol=1e-5)


def test_masked_keys_get_exactly_zero_weight(rng):
    mha = core.MultiHeadAttention(2, 4)
    x = tf.constant(100 * rng.normal(size=(2, 5, 3)).astype(np.float32))  # large logits
    mask = np.array([[True, False, False, True, False], [False, True, True, True, True]])
    weights = mha.attention_weights(x, key_mask=tf.constant(mask)).numpy()
    masked = np.broadcast_to(~mask[:, None, None, :], weights.shape)
    assert np.all(weights[masked] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


def test_numpy_inputs_and_mask_give_what_tensors_give(rng):
    mha = core.MultiHeadAttention(2, 3)
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mask = np.array([[True, False, True, True], [False, True, True, False]])
    expected = mha(tf.constant(x), key_mask=tf.constant(mask)).numpy()
    np.testing.assert_array_equal(mha(x, key_mask=mask).numpy(), expected)
    with pytest.raises(ValueError, match="expected key_mask of shape"):
        mha(x, key_mask=mask[:, :3])


def test_permutation_equivariant_over_entities(rng):
    mha = core.MultiHeadAttention(2, 3, b_init=init(3))
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    mask = np.array([[True, True, False, True, False], [True, False, True, True, True]])
    perm = np.array([3, 0, 4, 1, 2])
    out = mha(tf.constant(x), key_mask=tf.constant(mask)).numpy()
    permuted = mha(tf.constant(x[:, perm]), key_mask=tf.constant(mask[:, perm])).numpy()
    np.testing.assert_allclose(permuted, out[:, perm], atol=1e-6)


def test_masked_entities_do_not_reach_other_entities(rng):
    mha = core.MultiHeadAttention(2, 3)
    x = rng.normal(size=(1, 4, 4)).astype(np.float32)
    mask = np.array([[True, False, True, False]])
    changed = x.copy()
    changed[:, ~mask[0]] = 1e3 * rng.normal(size=(2, 4))  # padding with any content
    out = mha(tf.constant(x), key_mask=tf.constant(mask)).numpy()
    out_changed = mha(tf.constant(changed), key_mask=tf.constant(mask)).numpy()
    np.testing.assert_array_equal(out_changed[:, mask[0]], out[:, mask[0]])


@pytest.mark.parametrize("mode", MODES)
def test_all_masked_queries_give_zeros_not_nans(mode, rng):
    mha = core.MultiHeadAttention(2, 3, b_init=init(4))
    x = tf.constant(rng.normal(size=(2, 3, 4)).astype(np.float32))
    mask = tf.constant([[False] * 3, [True, False, True]])

    def step(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = mha(x, key_mask=mask)
            weights = mha.attention_weights(x, key_mask=mask)
            loss = tf.reduce_sum(out**2) + tf.reduce_sum(weights**2)
        return out, weights, tape.gradient(loss, [x] + list(mha.trainable_variables))

    step(x, mask)  # build the variables outside the traced function
    out, weights, grads = MODES[mode](step)(x, mask)
    assert np.all(weights.numpy()[0] == 0.0)
    # Zero attention output, so only the output projection's bias remains.
    np.testing.assert_array_equal(out.numpy()[0], np.broadcast_to(mha.output_proj.b.numpy(), (3, 4)))
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))
    np.testing.assert_array_equal(grads[0].numpy()[0], 0.0)  # the fully masked example's inputs do not matter


def test_defaults_and_variables(rng):
    mha = core.MultiHeadAttention(num_heads=4, key_size=2, name="enc")
    x = tf.constant(rng.normal(size=(1, 3, 5)).astype(np.float32))
    weights = mha.attention_weights(x)
    assert weights.shape == (1, 4, 3, 3)
    assert sorted(v.name for v in mha.variables) == ["enc/key/b:0", "enc/key/w:0", "enc/query/b:0", "enc/query/w:0"]
    assert mha(x).shape == (1, 3, 5)  # model_size defaults to the query's size
    shapes = {v.name: v.shape.as_list() for v in mha.variables}
    assert shapes["enc/value/w:0"] == [5, 8]  # value_size defaults to key_size
    assert shapes["enc/output/w:0"] == [8, 5]
    np.testing.assert_array_equal(mha.attention_weights(x).numpy(), weights.numpy())  # same variables


def test_unknown_batch_and_length(rng):
    mha = core.MultiHeadAttention(2, 3)
    x = tf.constant(rng.normal(size=(2, 4, 5)).astype(np.float32))
    mask = tf.constant([[True, False, True, True], [False] * 4])
    eager = mha(x, key_mask=mask)
    traced = tf.function(
        lambda x, m: mha(x, key_mask=m),
        input_signature=[tf.TensorSpec([None, None, 5], tf.float32), tf.TensorSpec([None, None], tf.bool)],
    )
    np.testing.assert_allclose(traced(x, mask).numpy(), eager.numpy(), atol=1e-6)


def test_bad_inputs():
    mha = core.MultiHeadAttention(2, 3, name="att")
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention 'att': expected query of rank 3 \[batch, queries, features\], got shape \(2, 5\)",
    ):
        mha(tf.ones([2, 5]))
    mha(tf.ones([2, 4, 5]), tf.ones([2, 3, 6]))
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention 'att': expected key with batch size 2 on axis 0, got shape \(3, 3, 6\)"
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([3, 3, 6]))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention 'att': expected key of rank 3 \[batch, keys, features\], got shape \(2, 6\)",
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([2, 6]))
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention 'att': expected value with key count 3 on axis 1, got shape \(2, 4, 6\)"
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([2, 3, 6]), tf.ones([2, 4, 6]))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention 'att': expected key with feature size 6 on axis -1, got shape \(2, 3, 7\)",
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([2, 3, 7]))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention 'att': expected query with feature size 5 on axis -1, got shape \(2, 4, 4\)",
    ):
        mha(tf.ones([2, 4, 4]), tf.ones([2, 3, 6]))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention 'att': expected key_mask of shape \(2, 3\) \[batch, keys\], got shape \(2, 4\)",
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([2, 3, 6]), key_mask=tf.ones([2, 4], tf.bool))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention 'att': expected key_mask of shape \(2, 3\) \[batch, keys\], got shape \(2, 1, 3\)",
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([2, 3, 6]), key_mask=tf.ones([2, 1, 3], tf.bool))
    with pytest.raises(
        TypeError, match=r"MultiHeadAttention 'att': key_mask must be bool \(True = may attend\), got dtype float32"
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([2, 3, 6]), key_mask=tf.ones([2, 3]))
    with pytest.raises(
        TypeError, match=r"MultiHeadAttention 'att': key tensors have dtype float64, but the module works in float32"
    ):
        mha(tf.ones([2, 4, 5]), tf.ones([2, 3, 6], tf.float64))
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention 'multi_head_attention': key_size must be a positive int, got 0"
    ):
        core.MultiHeadAttention(2, 0)
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention 'multi_head_attention': b_init given but with_bias=False"
    ):
        core.MultiHeadAttention(2, 3, with_bias=False, b_init=core.initializers.Zeros())


def test_numpy_integer_sizes():
    mha = core.MultiHeadAttention(np.int64(2), np.int32(3), value_size=np.uint8(2), model_size=np.int64(4))
    assert (mha.num_heads, mha.key_size, mha.value_size, mha.model_size) == (2, 3, 2, 4)
    assert all(type(v) is int for v in (mha.num_heads, mha.key_size, mha.value_size, mha.model_size))
    assert mha(tf.ones([1, 3, 5])).shape == (1, 3, 4)
    with pytest.raises(
        ValueError, match="MultiHeadAttention 'multi_head_attention': num_heads must be a positive int, got True"
    ):
        core.MultiHeadAttention(True, 3)
