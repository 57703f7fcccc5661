"""The DNC core: sizes, parameter count, modes, resets, options, errors."""

import numpy as np
import pytest
import tensorflow as tf

import core
from models.dnc import dnc

REPEAT_COPY = dict(
    access_config=dict(memory_size=16, word_size=16, num_reads=4, num_writes=1),
    controller_config=dict(hidden_size=64),
    output_size=5,
    clip_value=20,
)


def tiny(**access):
    config = dict(memory_size=6, word_size=4, num_reads=2, num_writes=1)
    config.update(access)
    return dnc.DNC(config, dict(hidden_size=8), output_size=3, clip_value=20)


def unroll(model, x):
    return core.dynamic_unroll(model, x, model.initial_state(tf.shape(x)[1]))


def test_repeat_copy_defaults_have_43980_parameters():
    model = dnc.DNC(**REPEAT_COPY)
    unroll(model, tf.zeros([2, 3, 6]))
    sizes = {v.name: int(np.prod(v.shape)) for v in model.trainable_variables}
    assert sum(sizes.values()) == 43_980
    assert sizes["dnc/controller/w_i:0"] + sizes["dnc/controller/w_h:0"] + sizes["dnc/controller/b:0"] == 34_560
    assert sizes["dnc/memory_access/interface/w:0"] + sizes["dnc/memory_access/interface/b:0"] == 8_775
    assert model.access.interface_size == 135


@pytest.mark.parametrize(
    "options",
    [{}, dict(masking=True, deallocation=True, link_sharpening=True, strength_op="oneplus")],
    ids=["deepmind", "csordas"],
)
def test_eager_function_and_xla_agree_on_any_batch_size(options):
    model = tiny(**options)
    x = tf.random.normal([5, 3, 7])
    eager, _ = unroll(model, x)
    fn = tf.function(lambda x: unroll(model, x)[0], input_signature=[tf.TensorSpec([5, None, 7])])
    xla = tf.function(lambda x: unroll(model, x)[0], jit_compile=True)
    np.testing.assert_allclose(fn(x).numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xla(x).numpy(), eager.numpy(), rtol=1e-5, atol=1e-5)
    # The same traced function takes another batch size.
    assert fn(tf.random.normal([5, 8, 7])).shape == (5, 8, 3)


def test_options_change_the_computation():
    x = tf.random.normal([4, 2, 7])
    base = tiny()
    out_base, _ = unroll(base, x)
    for option in ["masking", "deallocation", "link_sharpening"]:
        other = tiny(**{option: True})
        unroll(other, x)
        if option != "deallocation":  # masks and sharpness widen the interface
            assert other.access.interface_size > base.access.interface_size
        core.utils.port_variables(base, other, name_map=None) if option == "deallocation" else None
        out, _ = unroll(other, x)
        assert not np.allclose(out.numpy(), out_base.numpy()), option


def test_outputs_are_clipped():
    model = tiny()
    model.clip_value = 0.01
    out, _ = unroll(model, 100 * tf.random.normal([3, 2, 7]))
    assert np.abs(out.numpy()).max() <= 0.01 + 1e-7


def test_reset_restarts_an_element_from_the_initial_state():
    model = tiny()
    x = tf.random.normal([6, 2, 7])
    _, state = unroll(model, x[:3])
    step_in = x[3]
    # Element 0 reset: it must match a fresh state; element 1 carries on.
    out, _ = model((step_in, tf.constant([True, False])), state)
    fresh, _ = model(step_in, model.initial_state(2))
    carried, _ = model(step_in, state)
    np.testing.assert_allclose(out.numpy()[0], fresh.numpy()[0], rtol=1e-6)
    np.testing.assert_allclose(out.numpy()[1], carried.numpy()[1], rtol=1e-6)
    # Under an unroll: two packed sequences equal two separate runs.
    resets = tf.constant([[True], [False], [False], [True], [False], [False]])
    packed, _ = core.dynamic_unroll(model, (x[:, :1], resets), model.initial_state(1))
    first, _ = unroll(model, x[:3, :1])
    second, _ = unroll(model, x[3:, :1])
    np.testing.assert_allclose(packed.numpy(), np.concatenate([first, second]), rtol=1e-5, atol=1e-6)


def test_checkpointed_unroll_gives_the_same_gradients():
    model = tiny()
    x = tf.random.normal([4, 2, 7])
    unroll(model, x)

    def grads(fn):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(fn(model, x, model.initial_state(2))[0]))
        return tape.gradient(loss, model.trainable_variables)

    expected = tf.function(lambda: grads(core.dynamic_unroll))()
    got = tf.function(lambda: grads(lambda m, x, s: core.checkpointed_unroll(m, x, s, 2)))()
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    model = tiny()
    with pytest.raises(
        ValueError, match=r"DNC 'dnc': expected inputs of rank 2 \[batch, input_size\], got shape \(2, 3, 7\)"
    ):
        model(tf.zeros([2, 3, 7]), model.initial_state(2))
    with pytest.raises(TypeError, match=r"DNC 'dnc': inputs have dtype float64, but the module works in float32"):
        model(tf.zeros([2, 7], tf.float64), model.initial_state(2))
    model(tf.zeros([2, 7]), model.initial_state(2))
    with pytest.raises(ValueError, match=r"DNC 'dnc': expected inputs with input size 7 on axis 1, got shape \(2, 8\)"):
        model(tf.zeros([2, 8]), model.initial_state(2))
    with pytest.raises(TypeError, match="reset must be boolean"):
        model((tf.zeros([2, 7]), tf.zeros([2])), model.initial_state(2))
    with pytest.raises(ValueError, match=r"reset has shape \(3,\) but the inputs have batch size 2"):
        model((tf.zeros([2, 7]), tf.zeros([3], tf.bool)), model.initial_state(2))
    with pytest.raises(ValueError, match="memory_size must be a positive int, got 0"):
        dnc.DNC(dict(memory_size=0), dict(hidden_size=4), 2)
    with pytest.raises(ValueError, match="strength_op must be one of"):
        dnc.DNC(dict(strength_op="exp"), dict(hidden_size=4), 2)
    with pytest.raises(ValueError, match="controller_config needs hidden_size"):
        dnc.DNC({}, {}, 2)


def test_a_state_of_another_batch_or_shape_names_the_dnc_and_both_shapes():
    model = tiny()
    model(tf.zeros([2, 7]), model.initial_state(2))
    with pytest.raises(
        ValueError,
        match=r"DNC 'dnc': prev_state.access_output has batch size 3 \(shape \(3, 2, 4\)\) but the inputs have 2 "
        r"\(shape \(2, 7\)\); make the state with initial_state\(2\)",
    ):
        model(tf.zeros([2, 7]), model.initial_state(3))
    state = model.initial_state(2)
    bigger = tiny(memory_size=7).initial_state(2)
    with pytest.raises(
        ValueError, match=r"prev_state.access_state.memory has shape \(2, 7, 4\), expected \[batch, 6, 4\]"
    ):
        model(tf.zeros([2, 7]), state._replace(access_state=bigger.access_state))
    with pytest.raises(ValueError, match=r"prev_state must be a DNCState"):
        model(tf.zeros([2, 7]), tuple(state))
    # Under tf.function with an unknown batch the static checks pass the state through.
    fn = tf.function(lambda x: model(x, model.initial_state(tf.shape(x)[0]))[0])
    assert fn(tf.zeros([5, 7])).shape == (5, 3)


def _slot_permutation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """perm with b[perm] == a (approximately): matches memory rows [N, W] of two states."""
    distances = np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
    perm = distances.argmin(1)
    assert sorted(perm) == list(range(len(a))), "memory rows do not match one to one"
    return perm


@pytest.mark.parametrize("seed", range(6))
def test_xla_agrees_with_eager_up_to_a_permutation_of_slots(seed):
    # The allocation sort meets near-ties (free slots), which rounding may order either
    # way; the state must then be the eager one with slots permuted, and outputs equal.
    tf.random.set_seed(seed)
    model = tiny(masking=True, deallocation=True, link_sharpening=True, num_writes=2)
    x = tf.random.stateless_normal([9, 2, 7], [seed, 0])
    run = lambda x: core.dynamic_unroll(model, x, model.initial_state(2))  # noqa: E731
    (eager_out, eager), (xla_out, xla) = run(x), tf.function(run, jit_compile=True)(x)
    scale = np.abs(eager_out.numpy()).max()
    np.testing.assert_allclose(xla_out.numpy(), eager_out.numpy(), atol=1e-5 * scale)
    for b in range(2):
        e, z = eager.access_state, xla.access_state
        perm = _slot_permutation(e.memory.numpy()[b], z.memory.numpy()[b])
        close = lambda got, want: np.testing.assert_allclose(got, want, atol=1e-4)  # noqa: E731
        close(z.memory.numpy()[b][perm], e.memory.numpy()[b])
        close(z.usage.numpy()[b][perm], e.usage.numpy()[b])
        close(z.read_weights.numpy()[b][:, perm], e.read_weights.numpy()[b])
        close(z.write_weights.numpy()[b][:, perm], e.write_weights.numpy()[b])
        close(z.linkage.link.numpy()[b][:, perm][:, :, perm], e.linkage.link.numpy()[b])
