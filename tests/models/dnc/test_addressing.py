"""Memory addressing: the properties the paper's equations promise, and gradients."""

import numpy as np
import pytest
import tensorflow as tf

from models.dnc import access, addressing

B, N, W, R, WH = 3, 6, 5, 2, 2


def random_weights(rng, *shape, total=1.0):
    """Non-negative rows summing to `total` (a soft distribution over the last axis)."""
    w = rng.uniform(size=shape)
    return (total * w / w.sum(-1, keepdims=True)).astype(np.float64)


def run_link(rng, steps):
    """Link and precedence after `steps` random soft writes (each summing to at most 1)."""
    link = tf.zeros([B, WH, N, N], tf.float64)
    precedence = tf.zeros([B, WH, N], tf.float64)
    for _ in range(steps):
        write = random_weights(rng, B, WH, N, total=rng.uniform(0.2, 1.0))
        link, precedence = addressing.updated_linkage(link, precedence, tf.constant(write))
    return link.numpy(), precedence.numpy()


def one_hot_writes(slots):
    """[B, 1, N] one-hot write weights at the given slot."""
    w = np.zeros([B, 1, N])
    w[:, 0, slots] = 1.0
    return tf.constant(w)


def test_link_is_a_sub_stochastic_matrix_with_zero_diagonal():
    link, precedence = run_link(np.random.RandomState(0), steps=8)
    assert link.min() >= 0 and link.max() <= 1
    np.testing.assert_array_equal(np.diagonal(link, axis1=-2, axis2=-1), 0.0)
    assert link.sum(-1).max() <= 1 + 1e-12 and link.sum(-2).max() <= 1 + 1e-12
    assert precedence.min() >= 0 and precedence.sum(-1).max() <= 1 + 1e-12


def test_one_hot_writes_are_recorded_and_followed_both_ways():
    link = tf.zeros([B, 1, N, N], tf.float64)
    precedence = tf.zeros([B, 1, N], tf.float64)
    order = [4, 1, 3]
    for slot in order:
        link, precedence = addressing.updated_linkage(link, precedence, one_hot_writes(slot))
    link = link.numpy()
    # L[i, j] = 1 exactly when slot i was written right after slot j.
    expected = np.zeros([N, N])
    expected[1, 4] = expected[3, 1] = 1.0
    np.testing.assert_array_equal(link[0, 0], expected)
    # Reading slot 1: forward goes to the slot written after it (3), backward to the one before (4).
    read = np.zeros([B, 1, N])
    read[:, 0, 1] = 1.0
    forward = addressing.directional_read_weights(tf.constant(link), tf.constant(read), forward=True).numpy()
    backward = addressing.directional_read_weights(tf.constant(link), tf.constant(read), forward=False).numpy()
    assert forward.shape == (B, 1, 1, N)
    np.testing.assert_array_equal(forward[:, 0, 0], np.eye(N)[[3] * B])
    np.testing.assert_array_equal(backward[:, 0, 0], np.eye(N)[[4] * B])


def test_precedence_kept_by_zero_writes_and_replaced_by_full_writes():
    rng = np.random.RandomState(1)
    prev = tf.constant(random_weights(rng, B, WH, N, total=0.7))
    link = tf.zeros([B, WH, N, N], tf.float64)
    _, kept = addressing.updated_linkage(link, prev, tf.zeros([B, WH, N], tf.float64))
    np.testing.assert_array_equal(kept.numpy(), prev.numpy())
    full = random_weights(rng, B, WH, N, total=1.0)
    _, replaced = addressing.updated_linkage(link, prev, tf.constant(full))
    np.testing.assert_allclose(replaced.numpy(), full, atol=1e-15)


def test_usage_bounds_full_write_and_full_free():
    rng = np.random.RandomState(2)
    prev_usage = tf.constant(rng.uniform(size=[B, N]))
    reads = tf.constant(random_weights(rng, B, R, N))
    no_free = tf.zeros([B, R], tf.float64)
    u = addressing.updated_usage(prev_usage, tf.constant(random_weights(rng, B, WH, N)), no_free, reads).numpy()
    assert u.min() >= 0 and u.max() <= 1
    # A full (one-hot) write makes that slot's usage exactly 1.
    write = np.zeros([B, WH, N])
    write[:, 0, 2] = 1.0
    u = addressing.updated_usage(prev_usage, tf.constant(write), no_free, reads).numpy()
    np.testing.assert_array_equal(u[:, 2], 1.0)
    # A full free (gate 1 on a one-hot read) makes it exactly 0.
    read = np.zeros([B, R, N])
    read[:, 1, 2] = 1.0
    free = np.zeros([B, R])
    free[:, 1] = 1.0
    u = addressing.updated_usage(prev_usage, tf.constant(write), tf.constant(free), tf.constant(read)).numpy()
    np.testing.assert_array_equal(u[:, 2], 0.0)


def test_allocation_goes_to_the_least_used_slot():
    rng = np.random.RandomState(3)
    for _ in range(20):
        usage = rng.uniform(size=[B, N])
        a = addressing.allocation_weights(tf.constant(usage)).numpy()
        np.testing.assert_array_equal(a.argmax(-1), usage.argmin(-1))
        assert a.min() >= 0 and a.sum(-1).max() <= 1 + 1e-12
    # Free memory: everything goes to the first slot; full memory: nearly nothing anywhere.
    np.testing.assert_allclose(addressing.allocation_weights(tf.zeros([1, N], tf.float64)).numpy()[0, 0], 1 - 1e-6)
    assert addressing.allocation_weights(tf.ones([1, N], tf.float64)).numpy().sum() < 1e-5


def test_multiple_write_heads_allocate_different_slots():
    usage = tf.constant([[0.9, 0.1, 0.8, 0.0, 0.5, 0.7]], tf.float64)
    a = addressing.write_allocation_weights(usage, tf.ones([1, 2], tf.float64), num_writes=2).numpy()
    assert a[0, 0].argmax() == 3 and a[0, 1].argmax() == 1


def test_allocation_sums_to_one_minus_the_product_of_usages():
    # sum_j (1 - u_j) prod_{i<j} u_i telescopes to 1 - prod_i u_i.
    usage = np.random.RandomState(8).uniform(size=[B, N])
    a = addressing.allocation_weights(tf.constant(usage)).numpy()
    squeezed = 1e-6 + (1 - 1e-6) * usage
    np.testing.assert_allclose(a.sum(-1), 1.0 - squeezed.prod(-1), rtol=1e-12)


def test_write_weights_sum_to_the_write_gate():
    rng = np.random.RandomState(4)
    mem = access.MemoryAccess(memory_size=N, word_size=W, num_reads=R, num_writes=1, dtype=tf.float64)
    state = mem.initial_state(B)
    for _ in range(4):
        controller = tf.constant(rng.normal(size=[B, 7]))
        _, state = mem(controller, state)
        f = mem.interface_fields(controller)
        gate, allocation_gate = f["write_gate"].numpy()[:, 0], f["allocation_gate"].numpy()[:, 0]
        # Content weights sum to 1 and allocation weights to 1 - prod(usage): the
        # written total is the write gate, less what a full memory cannot allocate.
        squeezed = 1e-6 + (1 - 1e-6) * state.usage.numpy()
        expected = gate * (1.0 - allocation_gate * squeezed.prod(-1))
        np.testing.assert_allclose(state.write_weights.numpy()[:, 0].sum(-1), expected, rtol=1e-12)
        assert np.all(np.abs(expected - gate) < 1e-3 * gate)  # and that is the gate, near enough


@pytest.mark.parametrize("strength_op", [tf.nn.softplus, addressing.oneplus])
def test_key_equal_to_a_row_reads_that_row(strength_op):
    rng = np.random.RandomState(5)
    memory = rng.normal(size=[B, N, W])
    keys = memory[:, [4, 0], :]  # two heads: rows 4 and 0
    weights = addressing.cosine_weights(
        tf.constant(memory), tf.constant(keys), tf.constant(np.full([B, 2], 100.0)), strength_op
    )
    weights = tf.cast(weights, tf.float64).numpy()
    np.testing.assert_array_equal(weights.argmax(-1), [[4, 0]] * B)
    assert weights.max(-1).min() > 0.99


def test_masks_compare_only_the_masked_part():
    memory = np.zeros([1, 2, 4])
    memory[0, 0] = [1, 0, -5, 5]  # key part matches the query, value part differs
    memory[0, 1] = [0, 1, 1, 0]
    key = np.array([[[1, 0, 1, 0]]], np.float64)
    masks = np.array([[[1, 1, 0, 0]]], np.float64)
    unmasked = addressing.cosine_weights(
        tf.constant(memory), tf.constant(key), tf.constant(np.full([1, 1], 50.0))
    ).numpy()
    masked = addressing.cosine_weights(
        tf.constant(memory), tf.constant(key), tf.constant(np.full([1, 1], 50.0)), masks=tf.constant(masks)
    ).numpy()
    assert unmasked[0, 0].argmax() == 1 and masked[0, 0].argmax() == 0


def test_sharpen_keeps_argmax_and_concentrates():
    d = tf.constant([[0.1, 0.5, 0.3, 0.0]], tf.float64)
    s = addressing.sharpen(d, tf.constant([3.0], tf.float64)).numpy()
    np.testing.assert_allclose(s.sum(), 1.0)
    assert s.argmax() == 1 and s[0, 1] > 0.5 / 0.9


def test_zero_memory_rows_give_finite_values_and_gradients():
    memory = tf.zeros([B, N, W])
    keys = tf.zeros([B, R, W])
    strengths = tf.ones([B, R])
    with tf.GradientTape() as tape:
        tape.watch([memory, keys, strengths])
        w = addressing.cosine_weights(memory, keys, strengths)
        loss = tf.reduce_sum(w * tf.range(N, dtype=tf.float32))
    grads = tape.gradient(loss, [memory, keys, strengths])
    assert np.all(np.isfinite(w.numpy()))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def _max_gradient_error(fn, *args):
    theoretical, numerical = tf.test.compute_gradient(fn, [tf.constant(a) for a in args])
    return max(np.abs(t - n).max() for t, n in zip(theoretical, numerical))


def test_allocation_gradient():
    usage = np.random.RandomState(6).uniform(0.05, 0.95, size=[2, N])  # distinct: the sort is locally constant
    assert _max_gradient_error(addressing.allocation_weights, usage) < 0.01


def test_memory_access_gradient():
    rng = np.random.RandomState(7)
    mem = access.MemoryAccess(memory_size=N, word_size=W, num_reads=R, num_writes=1, dtype=tf.float64)
    state = mem.initial_state(2)
    for _ in range(3):  # a non-trivial state to differentiate around
        _, state = mem(tf.constant(rng.normal(size=[2, 9])), state)
    flat = tf.nest.flatten(state)

    def step(controller, memory, read_weights):
        inner = tf.nest.pack_sequence_as(state, [memory, read_weights, *flat[2:]])
        reads, _ = mem(controller, inner)
        return reads

    error = _max_gradient_error(step, rng.normal(size=[2, 9]), flat[0].numpy(), flat[1].numpy())
    assert error < 0.1


def _link_inputs(rng, n=N, wh=WH):
    link, precedence = run_link(rng, steps=4)  # a non-trivial link and precedence, zero diagonal
    if n != N or wh != WH:
        link, precedence = rng.uniform(0, 0.2, size=[B, wh, n, n]), random_weights(rng, B, wh, n, total=0.6)
        link = link * (1 - np.eye(n))
    write = random_weights(rng, B, wh, n, total=0.8)
    reads = random_weights(rng, B, R, n)
    return [tf.constant(a) for a in (link, precedence, write, reads)]


def _composed(prev_link, prev_precedence, write, reads):
    link, precedence = addressing.updated_linkage(prev_link, prev_precedence, write)
    forward = addressing.directional_read_weights(link, reads, forward=True)
    backward = addressing.directional_read_weights(link, reads, forward=False)
    return link, precedence, forward, backward


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("used", ["all", "reads_only", "link_only"])
def test_fused_link_and_reads_match_the_composed_functions_and_their_gradients(mode, used):
    rng = np.random.RandomState(8)
    inputs = _link_inputs(rng)
    cotangents = [tf.constant(rng.normal(size=x.shape)) for x in _composed(*inputs)]
    keep = {"all": [0, 1, 2, 3], "reads_only": [2, 3], "link_only": [0, 1]}[used]

    def values_and_grads(fn):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = fn(*inputs)
            loss = tf.add_n([tf.reduce_sum(outputs[i] * cotangents[i]) for i in keep])
        return outputs, tape.gradient(loss, inputs)

    wrap = {"eager": lambda f: f, "function": tf.function, "xla": lambda f: tf.function(f, jit_compile=True)}[mode]
    want_values, want_grads = wrap(lambda: values_and_grads(_composed))()
    got_values, got_grads = wrap(lambda: values_and_grads(addressing.linkage_and_directional_reads))()
    for got, want in zip(got_values, want_values):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)
    for got, want, x in zip(got_grads, want_grads, inputs):
        # No path from an input to the loss: None or zeros (the tape may fill in zeros).
        got, want = (np.zeros(x.shape) if g is None else g.numpy() for g in (got, want))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_fused_link_gradient_is_the_numerical_one_with_one_write_head():
    rng = np.random.RandomState(9)
    inputs = _link_inputs(rng, wh=1)

    def outputs(*args):
        return tf.concat([tf.reshape(o, [B, -1]) for o in addressing.linkage_and_directional_reads(*args)], axis=1)

    theoretical, numerical = tf.test.compute_gradient(outputs, inputs)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-6)
