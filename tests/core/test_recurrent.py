"""Recurrent cores and unrolls: parity with Sonnet, the layer-norm LSTM against NumPy, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity


def f32(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def as_function(fn, mode):
    """`fn` run eagerly, as a tf.function, or compiled with XLA."""
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=mode == "xla")


# --- parity with Sonnet: single steps --------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"projection_size": 3, "forget_bias": 0.5}], ids=["plain", "projection"])
def test_lstm_matches_sonnet(kwargs, rng):
    state_size = kwargs.get("projection_size", 5)
    inputs = [f32(rng, 2, 4), f32(rng, 2, state_size), f32(rng, 2, 5)]
    assert_parity(
        core.LSTM(5, **kwargs),
        snt.LSTM(5, **kwargs),
        inputs,
        call_ours=lambda m, x, h, c: m(x, core.LSTMState(h, c)),
        call_theirs=lambda m, x, h, c: m(x, snt.LSTMState(h, c)),
    )


def test_lstm_takes_sonnets_positional_arguments(rng):
    args = (4, 2, None, None, None, None, 0.5, tf.float64, "positional")
    ours, theirs = core.LSTM(*args), snt.LSTM(*args)
    assert ours.name == "positional" and not ours._layer_norm
    x = tf.constant(rng.normal(size=(1, 3)))
    ours(x, ours.initial_state(1))
    theirs(x, theirs.initial_state(1))
    describe = lambda m: [(v.name, v.shape, v.dtype) for v in m.variables]  # noqa: E731
    assert describe(ours) == describe(theirs)


def test_gru_matches_sonnet(rng):
    assert_parity(core.GRU(5), snt.GRU(5), [f32(rng, 2, 4), f32(rng, 2, 5)])


@pytest.mark.parametrize(
    "name, spatial, kernel_shape",
    [("Conv1DLSTM", [5], 3), ("Conv2DLSTM", [4, 5], 3), ("Conv2DLSTM", [4, 5], (3, 1)), ("Conv3DLSTM", [3, 4, 2], 3)],
)
def test_conv_lstms_match_sonnet(name, spatial, kernel_shape, rng):
    inputs = [f32(rng, 2, *spatial, 2), f32(rng, 2, *spatial, 3), f32(rng, 2, *spatial, 3)]
    assert_parity(
        getattr(core, name)([*spatial, 2], 3, kernel_shape, forget_bias=0.3),
        getattr(snt, name)([*spatial, 2], 3, kernel_shape, forget_bias=0.3),
        inputs,
        call_ours=lambda m, x, h, c: m(x, core.LSTMState(h, c)),
        call_theirs=lambda m, x, h, c: m(x, snt.LSTMState(h, c)),
    )


def test_deep_rnn_matches_sonnet(rng):
    inputs = [f32(rng, 2, 3), f32(rng, 2, 4), f32(rng, 2, 4), f32(rng, 2, 2)]
    ours = core.DeepRNN([core.LSTM(4, name="first"), core.Linear(3), tf.nn.relu, core.GRU(2, name="second")])
    theirs = snt.DeepRNN([snt.LSTM(4, name="first"), snt.Linear(3), tf.nn.relu, snt.GRU(2, name="second")])
    assert_parity(
        ours,
        theirs,
        inputs,
        call_ours=lambda m, x, h, c, g: m(x, (core.LSTMState(h, c), g)),
        call_theirs=lambda m, x, h, c, g: m(x, (snt.LSTMState(h, c), g)),
    )
    assert len(ours.initial_state(2)) == 2


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_deep_rnn_with_plain_callables_unrolls_as_sonnets(mode, rng):
    """Plain callables between cores take the inputs alone; the state covers the cores alone."""

    def layers(lib):
        return [lib.LSTM(4, name="first"), lib.Linear(3), tf.nn.relu, lib.GRU(2, name="second"), lambda x: 2.0 * x]

    ours, theirs = core.DeepRNN(layers(core)), snt.DeepRNN(layers(snt))
    assert len(ours.initial_state(2)) == len(theirs.initial_state(2)) == 2
    assert_parity(
        ours,
        theirs,
        [f32(rng, 3, 2, 3)],
        call_ours=as_function(lambda m, x: core.dynamic_unroll(m, x, m.initial_state(2)), mode),
        call_theirs=as_function(lambda m, x: snt.dynamic_unroll(m, x, m.initial_state(2)), mode),
    )


@pytest.mark.parametrize("concat_final_output", [True, False])
def test_skip_connections_match_sonnet(concat_final_output, rng):
    def layers(lib):
        return [lib.LSTM(4, name="first"), lib.GRU(3, name="second"), lib.LSTM(2, name="third")]

    assert_parity(
        core.deep_rnn_with_skip_connections(layers(core), concat_final_output),
        snt.deep_rnn_with_skip_connections(layers(snt), concat_final_output),
        [f32(rng, 2, 3)],
        call_ours=lambda m, x: m(x, m.initial_state(2)),
        call_theirs=lambda m, x: m(x, m.initial_state(2)),
    )


def test_residual_connections_match_sonnet(rng):
    def layers(lib):
        return [lib.LSTM(3, name="first"), lib.GRU(3, name="second")]

    inputs = [f32(rng, 2, 3), f32(rng, 2, 3), f32(rng, 2, 3), f32(rng, 2, 3)]
    assert_parity(
        core.deep_rnn_with_residual_connections(layers(core)),
        snt.deep_rnn_with_residual_connections(layers(snt)),
        inputs,
        call_ours=lambda m, x, h, c, g: m(x, (core.LSTMState(h, c), g)),
        call_theirs=lambda m, x, h, c, g: m(x, (snt.LSTMState(h, c), g)),
    )


# --- parity with Sonnet: unrolls --------------------------------------------------------


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("lengths", [None, [3, 0, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("unroll", ["dynamic_unroll", "static_unroll"])
def test_unrolls_match_sonnet(unroll, lengths, mode, rng):
    ours_fn, theirs_fn = getattr(core, unroll), getattr(snt, unroll)
    seq_len = None if lengths is None else tf.constant(lengths, tf.int32)
    inputs = [f32(rng, 3, 3, 4), f32(rng, 3, 5), f32(rng, 3, 5)]

    def call_ours(m, seq, h, c):
        return ours_fn(m, seq, core.LSTMState(h, c), sequence_length=seq_len)

    def call_theirs(m, seq, h, c):
        return theirs_fn(m, seq, snt.LSTMState(h, c), sequence_length=seq_len)

    assert_parity(
        core.LSTM(5),
        snt.LSTM(5),
        inputs,
        call_ours=as_function(call_ours, mode),
        call_theirs=as_function(call_theirs, mode),
    )


# Every variable's gradient through a whole unroll, against Sonnet's: the unrolls move
# the input products (and, in graphs, the recurrent weights' gradients) out of the loop.
_SONNET_UNROLLS = {
    "LSTM": (lambda lib: lib.LSTM(4), (5, 2, 3)),
    "LSTM_projection": (lambda lib: lib.LSTM(4, projection_size=2), (5, 2, 3)),
    "GRU": (lambda lib: lib.GRU(3), (5, 2, 3)),
    "Conv2DLSTM": (lambda lib: lib.Conv2DLSTM([3, 3, 2], 2, 3), (4, 2, 3, 3, 2)),
}


@pytest.mark.parametrize(
    "name, mode",
    [(name, mode) for name in _SONNET_UNROLLS for mode in ("eager", "function")] + [("LSTM", "xla"), ("GRU", "xla")],
)
def test_unroll_parameter_gradients_match_sonnet(name, mode, rng):
    make, shape = _SONNET_UNROLLS[name]
    seq = tf.constant(f32(rng, *shape))
    theirs, ours = make(snt), make(core)
    theirs(seq[0], theirs.initial_state(2)), ours(seq[0], ours.initial_state(2))
    core.utils.port_variables(theirs, ours)

    def grads(lib, module):
        with tf.GradientTape() as tape:
            outputs, final = lib.dynamic_unroll(module, seq, module.initial_state(2))
            loss = tf.reduce_sum(tf.sin(outputs)) + sum(tf.reduce_sum(s * s) for s in tf.nest.flatten(final))
        names = [v.name for v in module.trainable_variables]
        return dict(zip(names, tape.gradient(loss, module.trainable_variables)))

    want = grads(snt, theirs)
    got = as_function(lambda: grads(core, ours), mode)()
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda lib: lib.LSTM(4, projection_size=2), (2, 3)),
        (lambda lib: lib.GRU(3), (2, 3)),
        (lambda lib: lib.Conv2DLSTM([3, 3, 2], 2, 3), (2, 3, 3, 2)),
    ],
    ids=["LSTM", "GRU", "Conv2DLSTM"],
)
def test_sonnet_checkpoints_restore(make, shape, tmp_path, rng):
    x = tf.constant(f32(rng, *shape))
    theirs, ours = make(snt), make(core)
    expected = theirs(x, theirs.initial_state(2))[0]
    path = tf.train.Checkpoint(module=theirs).write(str(tmp_path / "ckpt"))
    ours(x, ours.initial_state(2))
    tf.train.Checkpoint(module=ours).read(path).assert_consumed()
    np.testing.assert_allclose(ours(x, ours.initial_state(2))[0], expected, atol=1e-6)


# --- the layer-normalised LSTM against a NumPy reference --------------------------------


def _np_normalize(v, eps=1e-5):
    mean = v.mean(-1, keepdims=True)
    return (v - mean) / np.sqrt(((v - mean) ** 2).mean(-1, keepdims=True) + eps)


def _np_sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def ln_lstm_reference(x, h, c, p):
    """Ba et al.'s layer-normalised LSTM step (per-gate normalisation) in NumPy float64."""
    size = c.shape[1]
    z = x @ p["w_i"] + h @ p["w_h"]
    u = np.concatenate([_np_normalize(z[:, k * size : (k + 1) * size]) for k in range(4)], axis=1)
    u = u * p["gates_scale"] + p["b"]
    i, f, g, o = np.split(u, 4, axis=1)
    new_c = _np_sigmoid(f) * c + _np_sigmoid(i) * np.tanh(g)
    new_h = _np_sigmoid(o) * np.tanh(_np_normalize(new_c) * p["cell_scale"] + p["cell_offset"])
    if "projection" in p:
        new_h = new_h @ p["projection"]
    return new_h, new_c


def _randomised_ln_lstm(rng, dtype, **kwargs):
    """A built layer-norm LSTM (input 4, hidden 3) whose gains and offsets are not 1 and 0."""
    lstm = core.LSTM(3, layer_norm=True, dtype=dtype, **kwargs)
    lstm(tf.zeros([2, 4], dtype), lstm.initial_state(2))
    for v in (lstm.gates_scale, lstm.cell_scale, lstm.cell_offset, lstm.b):
        v.assign(v + rng.normal(scale=0.5, size=v.shape).astype(dtype.as_numpy_dtype))
    params = {n: getattr(lstm, n).numpy().astype(np.float64) for n in ("b", "gates_scale", "cell_scale", "cell_offset")}
    params["w_i"] = lstm.input_to_hidden.numpy().astype(np.float64)
    params["w_h"] = lstm.hidden_to_hidden.numpy().astype(np.float64)
    if lstm.projection is not None:
        params["projection"] = lstm.projection.numpy().astype(np.float64)
    return lstm, params


def test_layer_norm_lstm_initial_parameters():
    lstm = core.LSTM(3, layer_norm=True, forget_bias=0.7)
    lstm(tf.zeros([1, 2]), lstm.initial_state(1))
    np.testing.assert_array_equal(lstm.gates_scale.numpy(), np.ones(12))
    np.testing.assert_array_equal(lstm.cell_scale.numpy(), np.ones(3))
    np.testing.assert_array_equal(lstm.cell_offset.numpy(), np.zeros(3))
    np.testing.assert_allclose(lstm.b.numpy(), np.repeat([0.0, 0.7, 0.0, 0.0], 3))


@pytest.mark.parametrize("projection", [False, True])
def test_layer_norm_lstm_matches_numpy_over_steps(projection, rng):
    kwargs = {"projection_size": 2} if projection else {}
    lstm, params = _randomised_ln_lstm(rng, tf.float32, **kwargs)
    xs = rng.normal(size=(3, 2, 4))
    state = lstm.initial_state(2)
    h, c = np.zeros(state.hidden.shape), np.zeros(state.cell.shape)
    expected = []
    for x in xs:
        h, c = ln_lstm_reference(x, h, c, params)
        expected.append(h)
    outputs, final = core.dynamic_unroll(lstm, tf.constant(xs, tf.float32), state)
    np.testing.assert_allclose(outputs.numpy(), np.stack(expected), atol=1e-5)
    np.testing.assert_allclose(final.cell.numpy(), c, atol=1e-5)


def test_layer_norm_lstm_input_gradients_match_finite_differences(rng):
    lstm, params = _randomised_ln_lstm(rng, tf.float64)
    x, h, c = rng.normal(size=(2, 4)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    w_h, w_c = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))

    def np_loss(x, h, c):
        new_h, new_c = ln_lstm_reference(x, h, c, params)
        return np.sum(w_h * new_h) + np.sum(w_c * new_c)

    tensors = [tf.constant(v) for v in (x, h, c)]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        new_h, state = lstm(tensors[0], core.LSTMState(tensors[1], tensors[2]))
        loss = tf.reduce_sum(w_h * new_h) + tf.reduce_sum(w_c * state.cell)
    np.testing.assert_allclose(loss.numpy(), np_loss(x, h, c), atol=1e-10)
    grads = tape.gradient(loss, tensors)

    eps = 1e-6
    values = [x, h, c]
    for which, grad in enumerate(grads):
        numeric = np.zeros_like(values[which])
        for index in np.ndindex(*numeric.shape):
            up = [v.copy() for v in values]
            down = [v.copy() for v in values]
            up[which][index] += eps
            down[which][index] -= eps
            numeric[index] = (np_loss(*up) - np_loss(*down)) / (2 * eps)
        np.testing.assert_allclose(grad.numpy(), numeric, atol=1e-7, err_msg=f"gradient {which}")


# --- other behaviour ---------------------------------------------------------------------


def test_dtype_argument_sets_parameters_and_state(rng):
    lstm = core.LSTM(3, dtype=tf.float64)
    state = lstm.initial_state(2)
    assert state.hidden.dtype == tf.float64 and state.cell.dtype == tf.float64
    out, _ = lstm(tf.constant(rng.normal(size=(2, 4))), state)
    assert out.dtype == tf.float64 and lstm.b.dtype == tf.float64
    assert core.GRU(2, dtype=tf.float16).initial_state(1).dtype == tf.float16


def test_default_initialisation():
    lstm = core.LSTM(500, forget_bias=2.0)
    lstm(tf.zeros([1, 400]), lstm.initial_state(1))
    # TruncatedNormal(stddev=1/sqrt(fan in)) has standard deviation 0.8796 / sqrt(fan in).
    assert lstm.input_to_hidden.numpy().std() == pytest.approx(0.87962566 / 20, rel=0.02)
    assert lstm.hidden_to_hidden.numpy().std() == pytest.approx(0.87962566 / np.sqrt(500), rel=0.02)
    np.testing.assert_array_equal(lstm.b.numpy(), np.repeat([0.0, 2.0, 0.0, 0.0], 500))


def test_conv2d_lstm_nchw_matches_nhwc(rng):
    nhwc = core.Conv2DLSTM([4, 5, 2], 3, 3)
    nchw = core.Conv2DLSTM([2, 4, 5], 3, 3, data_format="NCHW")
    x, h, c = f32(rng, 2, 4, 5, 2), f32(rng, 2, 4, 5, 3), f32(rng, 2, 4, 5, 3)
    out, state = nhwc(x, core.LSTMState(h, c))
    to_nchw = lambda t: np.transpose(t, [0, 3, 1, 2])  # noqa: E731
    assert nchw.initial_state(2).hidden.shape == (2, 3, 4, 5)
    nchw(to_nchw(x), nchw.initial_state(2))
    core.utils.port_variables(nhwc, nchw)
    out2, state2 = nchw(to_nchw(x), core.LSTMState(to_nchw(h), to_nchw(c)))
    np.testing.assert_allclose(out2.numpy(), to_nchw(out.numpy()), atol=1e-5)
    np.testing.assert_allclose(state2.cell.numpy(), to_nchw(state.cell.numpy()), atol=1e-5)


# --- dynamic_unroll and static_unroll ----------------------------------------------------


class _NestedCore(core.RNNCore):
    """A core with nested inputs, outputs and state, to test the unrolls' nest handling."""

    def __init__(self):
        super().__init__(name="nested")
        self.lstm = core.LSTM(3)

    def __call__(self, inputs, prev_state):
        lstm_state, count = prev_state
        out, lstm_state = self.lstm(tf.concat([inputs["a"], inputs["b"]], -1), lstm_state)
        return {"out": out, "pair": (out * 2.0, inputs["b"])}, (lstm_state, count + 1.0)

    def initial_state(self, batch_size):
        return self.lstm.initial_state(batch_size), tf.zeros([batch_size])


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("lengths", [None, [4, 0, 2]], ids=["full", "lengths"])
def test_dynamic_and_static_unroll_agree(lengths, mode, rng):
    net = _NestedCore()
    seq = {"a": tf.constant(f32(rng, 4, 3, 2)), "b": tf.constant(f32(rng, 4, 3, 1))}
    seq_len = None if lengths is None else tf.constant(lengths)
    static = core.static_unroll(net, seq, net.initial_state(3), sequence_length=seq_len)
    run = as_function(lambda s: core.dynamic_unroll(net, s, net.initial_state(3), sequence_length=seq_len), mode)
    dynamic = run(seq)
    tf.nest.assert_same_structure(static, dynamic)
    for a, b in zip(tf.nest.flatten(dynamic), tf.nest.flatten(static)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_sequence_length_holds_finished_sequences(rng):
    lstm = core.LSTM(3)
    seq = tf.constant(f32(rng, 4, 3, 2))
    initial = core.LSTMState(tf.constant(f32(rng, 3, 3)), tf.constant(f32(rng, 3, 3)))
    outputs, final = core.dynamic_unroll(lstm, seq, initial, sequence_length=[2, 4, 0])
    full_outputs, _ = core.dynamic_unroll(lstm, seq, initial)
    _, after_two = core.dynamic_unroll(lstm, seq[:2], initial)
    outputs, full_outputs = outputs.numpy(), full_outputs.numpy()
    # Sequence 0 (length 2): its last output repeats and its state stops after step 2.
    np.testing.assert_allclose(outputs[:2, 0], full_outputs[:2, 0], atol=1e-6)
    np.testing.assert_allclose(outputs[2:, 0], np.stack([full_outputs[1, 0]] * 2), atol=1e-6)
    np.testing.assert_allclose(final.cell[0], after_two.cell[0], atol=1e-6)
    # Sequence 1 runs to the end; sequence 2 (length 0) outputs zeros and keeps its state.
    np.testing.assert_allclose(outputs[:, 1], full_outputs[:, 1], atol=1e-6)
    np.testing.assert_array_equal(outputs[:, 2], np.zeros((4, 3)))
    np.testing.assert_array_equal(final.hidden[2], initial.hidden[2])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_dynamic_unroll_with_unknown_number_of_steps(jit_compile, rng):
    lstm = core.LSTM(3)
    seq = tf.constant(f32(rng, 5, 2, 4))
    expected, expected_state = core.static_unroll(lstm, seq, lstm.initial_state(2), sequence_length=[5, 3])

    @tf.function(input_signature=[tf.TensorSpec([None, 2, 4])], jit_compile=jit_compile)
    def run(s):
        return core.dynamic_unroll(lstm, s, lstm.initial_state(2), sequence_length=[5, 3])

    outputs, state = run(seq)
    np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(state.cell.numpy(), expected_state.cell.numpy(), atol=1e-6)
    assert run(seq[:2])[0].shape == (2, 2, 3)


def test_dynamic_unroll_gradients_agree_across_modes(rng):
    lstm = core.LSTM(3, layer_norm=True)
    seq = tf.constant(f32(rng, 4, 2, 3))
    lstm(seq[0], lstm.initial_state(2))
    for v in lstm.variables:  # fixed weights: the test must not depend on the global seed
        v.assign(f32(rng, *v.shape) * 0.5 + (1.0 if "scale" in v.name else 0.0))

    def grads(s):
        with tf.GradientTape() as tape:
            tape.watch(s)
            outputs, state = core.dynamic_unroll(lstm, s, lstm.initial_state(2), sequence_length=[4, 2])
            loss = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(state.cell)
        return tape.gradient(loss, [s] + list(lstm.trainable_variables))

    expected = grads(seq)
    for jit_compile in (False, True):
        for got, want in zip(tf.function(grads, jit_compile=jit_compile)(seq), expected):
            # Within 1e-5 of each gradient's largest element: XLA reorders float sums, and
            # layer norm over 3 units amplifies rounding in absolute terms.
            scale = float(np.abs(want.numpy()).max())
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5 * scale)


_CORES = {
    "LSTM": (lambda: core.LSTM(4), (4, 3, 3)),
    "LSTM_projection": (lambda: core.LSTM(4, projection_size=2), (4, 3, 3)),
    "LSTM_layer_norm": (lambda: core.LSTM(4, layer_norm=True), (4, 3, 3)),
    "GRU": (lambda: core.GRU(4), (4, 3, 3)),
    "Conv1DLSTM": (lambda: core.Conv1DLSTM([5, 2], 2, 3), (3, 3, 5, 2)),
    "Conv3DLSTM": (lambda: core.Conv3DLSTM([2, 3, 3, 2], 2, 3), (3, 3, 2, 3, 3, 2)),
}


@pytest.mark.parametrize(
    "name, lengths, mode",
    [
        ("LSTM", "lengths", "function"),
        ("LSTM", "full", "xla"),
        ("LSTM_projection", "lengths", "function"),
        ("LSTM_layer_norm", "full", "function"),
        ("LSTM_layer_norm", "lengths", "xla"),
        ("GRU", "lengths", "function"),
        ("GRU", "full", "xla"),
        ("Conv1DLSTM", "lengths", "function"),
        ("Conv3DLSTM", "full", "xla"),
    ],
)
def test_fast_unroll_gradients_match_autodiff(name, lengths, mode, rng):
    """The gradients `dynamic_unroll` writes out equal autodiff's through `static_unroll`."""
    make, shape = _CORES[name]
    cell = make()
    seq = tf.constant(f32(rng, *shape))
    cell(seq[0], cell.initial_state(3))
    for v in cell.variables:  # gains and offsets away from 1 and 0
        v.assign(v + f32(rng, *v.shape) * 0.3)
    initial = tf.nest.map_structure(lambda s: s + 0.5, cell.initial_state(3))
    seq_len = tf.constant([3, 1, 0]) if lengths == "lengths" else None

    def results(unroll, s):
        with tf.GradientTape() as tape:
            tape.watch([s, initial])
            outputs, final = unroll(cell, s, initial, sequence_length=seq_len)
            loss = tf.reduce_sum(tf.sin(outputs)) + sum(tf.reduce_sum(tf.cos(x)) for x in tf.nest.flatten(final))
        sources = [s, *tf.nest.flatten(initial), *cell.trainable_variables]
        return [outputs, *tf.nest.flatten(final), *tape.gradient(loss, sources)]

    want = results(core.static_unroll, seq)
    got = tf.function(lambda s: results(core.dynamic_unroll, s), jit_compile=mode == "xla")(seq)
    for i, (a, b) in enumerate(zip(got, want)):
        scale = float(np.abs(b.numpy()).max()) or 1.0
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * scale, err_msg=f"result {i}")


def test_fast_unroll_refuses_second_derivatives(rng):
    """A gradient penalty through the fast unroll raises (its values would be wrong);
    `static_unroll` gives it, as Sonnet's unrolls do."""
    lstm = core.LSTM(3)
    seq = tf.constant(f32(rng, 4, 2, 3))
    lstm(seq[0], lstm.initial_state(2))

    def penalty_grads(unroll):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(seq)
                loss = tf.reduce_sum(tf.sin(unroll(lstm, seq, lstm.initial_state(2))[0]))
            penalty = tf.reduce_sum(tf.square(inner.gradient(loss, seq)))
        return outer.gradient(penalty, lstm.trainable_variables)

    # A LookupError, which tf.function re-raises as its StagingError.
    with pytest.raises(Exception, match="LSTM 'lstm' in a graph computes its gradient by hand .* static_unroll"):
        tf.function(lambda: penalty_grads(core.dynamic_unroll))()
    static = tf.function(lambda: penalty_grads(core.static_unroll))()
    eager = penalty_grads(core.dynamic_unroll)
    for a, b in zip(static, eager):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_a_subclass_with_its_own_step_is_unrolled_step_by_step(rng):
    class Doubled(core.LSTM):
        def __call__(self, inputs, prev_state):
            return super().__call__(2.0 * inputs, prev_state)

    doubled, plain = Doubled(3), core.LSTM(3)
    seq = tf.constant(f32(rng, 3, 2, 4))
    doubled(seq[0], doubled.initial_state(2)), plain(seq[0], plain.initial_state(2))
    core.utils.port_variables(plain, doubled)
    for unroll in (core.dynamic_unroll, tf.function(core.dynamic_unroll)):
        got = unroll(doubled, seq, doubled.initial_state(2))[0]
        np.testing.assert_allclose(got, unroll(plain, 2.0 * seq, plain.initial_state(2))[0], atol=1e-6)


def test_dynamic_unroll_in_mirrored_strategy(mirrored, rng):
    with mirrored.scope():
        lstm = core.LSTM(3)
    lstm(tf.zeros([2, 4]), lstm.initial_state(2))
    data = [f32(rng, 3, 2, 4) for _ in range(mirrored.num_replicas_in_sync)]
    dist = mirrored.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(data[ctx.replica_id_in_sync_group])
    )

    def outputs_and_grads(unroll, seq):
        with tf.GradientTape() as tape:
            outputs = unroll(lstm, seq, lstm.initial_state(2))[0]
            loss = tf.reduce_sum(tf.sin(outputs))
        return [outputs, *tape.gradient(loss, lstm.trainable_variables)]

    step = tf.function(lambda s: mirrored.run(lambda q: outputs_and_grads(core.dynamic_unroll, q), args=(s,)))
    results = step(dist)
    for replica, seq in enumerate(data):
        expected = outputs_and_grads(core.static_unroll, tf.constant(seq))
        for got, want in zip(results, expected):
            got = mirrored.experimental_local_results(got)[replica]
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


# --- errors -----------------------------------------------------------------------------


def test_bad_core_inputs():
    lstm = core.LSTM(3, name="core")
    state = lstm.initial_state(2)
    with pytest.raises(
        ValueError, match=r"LSTM 'core': expected inputs of rank 2 \[batch, input_size\], got shape \(2, 1, 4\)"
    ):
        lstm(tf.ones([2, 1, 4]), state)
    with pytest.raises(
        TypeError, match=r"LSTM 'core': inputs have dtype float64, but the core was built with dtype=float32"
    ):
        lstm(tf.ones([2, 4], tf.float64), state)
    lstm(tf.ones([2, 4]), state)
    with pytest.raises(
        ValueError, match=r"LSTM 'core': expected inputs with input size 4 on axis 1, got shape \(2, 5\)"
    ):
        lstm(tf.ones([2, 5]), state)
    with pytest.raises(
        TypeError, match=r"LSTM 'core': inputs have dtype float64, but the core was built with dtype=float32"
    ):
        lstm(tf.ones([2, 4], tf.float64), state)
    with pytest.raises(ValueError, match=r"LSTM 'core': prev_state.hidden has batch size 1 but the inputs have 2"):
        lstm(tf.ones([2, 4]), lstm.initial_state(1))
    with pytest.raises(
        ValueError, match=r"LSTM 'core': expected prev_state.cell with size 3 on axis -1, got shape \(2, 4\)"
    ):
        lstm(tf.ones([2, 4]), core.LSTMState(state.hidden, tf.zeros([2, 4])))
    with pytest.raises(TypeError, match=r"LSTM 'core': prev_state.hidden has dtype float64"):
        lstm(tf.ones([2, 4]), core.LSTMState(tf.zeros([2, 3], tf.float64), state.cell))

    gru = core.GRU(3)
    gru(tf.ones([2, 4]), gru.initial_state(2))
    with pytest.raises(ValueError, match=r"GRU 'gru': expected prev_state with size 3 on axis -1, got shape \(2, 2\)"):
        gru(tf.ones([2, 4]), tf.zeros([2, 2]))

    conv = core.Conv2DLSTM([4, 4, 2], 3, 3)
    with pytest.raises(
        ValueError,
        match=(
            r"Conv2DLSTM 'conv2_dlstm': expected inputs of shape \[batch, 4, 4, "
            r"2\] \(input_shape, NHWC\), got shape \(1, 5, 4, 2\)"
        ),
    ):
        conv(tf.ones([1, 5, 4, 2]), conv.initial_state(1))

    deep = core.DeepRNN([core.LSTM(2), core.GRU(2)], name="deep")
    with pytest.raises(
        ValueError, match=r"DeepRNN 'deep': prev_state must hold one state per recurrent core \(2\), got 1"
    ):
        deep(tf.ones([1, 2]), deep.initial_state(1)[:1])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="LSTM 'lstm': hidden_size must be a positive int, got 0"):
        core.LSTM(0)
    with pytest.raises(ValueError, match="LSTM 'lstm': projection_init given but projection_size is None"):
        core.LSTM(3, projection_init=core.initializers.Zeros())
    with pytest.raises(TypeError, match="GRU 'gru': dtype must be floating point, got int32"):
        core.GRU(3, dtype=tf.int32)
    with pytest.raises(ValueError, match=r"input_shape must be 3 positive ints \(.*, HWC\), got \[4, 4\]"):
        core.Conv2DLSTM([4, 4], 3, 3)
    with pytest.raises(ValueError, match=r"input_shape must be 2 positive ints \(.*, CW\), got \[4, 4, 1\]"):
        core.Conv1DLSTM([4, 4, 1], 3, 3, data_format="NCW")
    with pytest.raises(ValueError, match=r"data_format must be one of \('NHWC', 'NCHW'\), got 'NCW'"):
        core.Conv2DLSTM([4, 4, 2], 3, 3, data_format="NCW")
    with pytest.raises(ValueError, match=r"kernel_shape must be a positive int or a sequence of 1 or 3"):
        core.Conv3DLSTM([4, 4, 4, 2], 3, (3, 3))
    with pytest.raises(ValueError, match="deep_rnn_with_skip_connections needs every layer to be an RNNCore"):
        core.deep_rnn_with_skip_connections([core.LSTM(2), tf.nn.relu])
    with pytest.raises(TypeError, match="Can't instantiate abstract class RNNCore"):
        core.RNNCore()


def test_bad_unroll_inputs():
    lstm = core.LSTM(3)
    state = lstm.initial_state(2)
    with pytest.raises(ValueError, match="dynamic_unroll: input_sequence must have at least one time step, got 0"):
        core.dynamic_unroll(lstm, tf.zeros([0, 2, 4]), state)
    with pytest.raises(
        ValueError, match=r"static_unroll: the input_sequence tensors disagree on the number of time steps: \[2, 3\]"
    ):
        core.static_unroll(lstm, (tf.zeros([2, 2, 4]), tf.zeros([3, 2, 4])), state)
    with pytest.raises(
        ValueError,
        match=r"dynamic_unroll: every input_sequence tensor must be \[T, B, ...\] \(rank >= 2\), got shape \(3,\)",
    ):
        core.dynamic_unroll(lstm, tf.zeros([3]), state)
    with pytest.raises(
        ValueError, match=r"dynamic_unroll: sequence_length must have shape \[batch\] = \[2\], got shape \(3,\)"
    ):
        core.dynamic_unroll(lstm, tf.zeros([3, 2, 4]), state, sequence_length=[1, 2, 3])
    with pytest.raises(TypeError, match="dynamic_unroll: sequence_length must be integers, got dtype float32"):
        core.dynamic_unroll(lstm, tf.zeros([3, 2, 4]), state, sequence_length=[1.0, 2.0])
    with pytest.raises(ValueError, match="dynamic_unroll: input_sequence is empty"):
        core.dynamic_unroll(lstm, [], state)
    with pytest.raises(ValueError, match="static_unroll: the number of time steps .* must be known statically"):
        unknown_steps = [tf.TensorSpec([None, 2, 4])]
        tf.function(lambda s: core.static_unroll(lstm, s, state), input_signature=unknown_steps).get_concrete_function()


@pytest.mark.parametrize("chunk_size", [1, 3, 7])
def test_checkpointed_unroll_matches_dynamic_unroll(chunk_size):
    lstm = core.LSTM(5)
    inputs = {"a": tf.random.normal([7, 2, 3]), "b": tf.random.normal([7, 2, 1])}

    class TwoInputs(core.RNNCore):
        def __call__(self, x, state):
            out, state = lstm(tf.concat([x["a"], x["b"]], -1), state)
            return (out, 2.0 * out), state

        def initial_state(self, batch_size):
            return lstm.initial_state(batch_size)

    cell = TwoInputs()

    def run(unroll):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs, final = unroll(cell, inputs, cell.initial_state(2))
            loss = tf.reduce_sum(outputs[0] ** 2) + tf.reduce_sum(outputs[1]) + tf.reduce_sum(final.cell)
        grads = tape.gradient(loss, [inputs["a"], *lstm.trainable_variables])
        return outputs, final, grads

    expected = tf.function(lambda: run(core.dynamic_unroll))()
    got = tf.function(lambda: run(lambda c, x, s: core.checkpointed_unroll(c, x, s, chunk_size)))()
    for a, b in zip(tf.nest.flatten(got), tf.nest.flatten(expected)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_checkpointed_unroll_errors():
    lstm = core.LSTM(2)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        core.checkpointed_unroll(lstm, tf.zeros([3, 1, 2]), lstm.initial_state(1), 0)
    spec = tf.TensorSpec([None, 1, 2])
    fn = tf.function(lambda x: core.checkpointed_unroll(lstm, x, lstm.initial_state(1), 2), input_signature=[spec])
    with pytest.raises(ValueError, match="must be known statically"):
        fn.get_concrete_function()


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "function"])
def test_badly_structured_state_names_the_core(traced):
    lstm = core.LSTM(3, name="core")
    x, h = tf.ones([2, 4]), tf.zeros([2, 3])
    lstm(x, lstm.initial_state(2))
    # A fresh tf.function per call: one whose first call failed cannot be reused.
    run = (lambda *args: tf.function(lstm)(*args)) if traced else lstm
    expected = (
        r"LSTM 'core': prev_state must be LSTMState\(hidden=\[batch, 3\], "
        r"cell=\[batch, 3\]\), as initial_state\(batch_size\) makes it; got "
    )
    with pytest.raises(ValueError, match=expected + r"a tuple of length 1: \(tensor \(2, 3\)\)"):
        run(x, (h,))
    with pytest.raises(ValueError, match=expected + r"a single tensor \(2, 3\)"):
        run(x, h)  # a [2, 3] tensor would otherwise be split into two rows
    with pytest.raises(ValueError, match=expected + "None"):
        run(x, None)
    projected = core.LSTM(4, projection_size=2, name="p")
    with pytest.raises(
        ValueError, match=r"LSTM 'p': prev_state must be LSTMState\(hidden=\[batch, 2\], cell=\[batch, 4\]\)"
    ):
        projected(x, [h, h, h])

    gru = core.GRU(3)
    with pytest.raises(
        ValueError, match=r"GRU 'gru': prev_state must be one tensor \[batch, 3\], .* got a LSTMState of length 2"
    ):
        gru(x, core.LSTMState(h, h))
    conv = core.Conv2DLSTM([4, 4, 2], 3, 3)
    with pytest.raises(
        ValueError,
        match=(
            r"Conv2DLSTM 'conv2_dlstm': prev_state must be "
            r"LSTMState\(hidden=\[batch, 4, 4, 3\], cell=\[batch, 4, 4, 3\]\)"
        ),
    ):
        conv(tf.ones([2, 4, 4, 2]), conv.initial_state(2).hidden)


def test_numpy_integer_arguments():
    lstm = core.LSTM(np.int64(3), projection_size=np.int32(2))
    assert type(lstm.hidden_size) is int
    out, state = lstm(tf.ones([2, 4]), lstm.initial_state(2))
    assert out.shape == (2, 2) and state.cell.shape == (2, 3)
    gru = core.GRU(np.uint16(3))
    assert gru(tf.ones([2, 4]), gru.initial_state(2))[0].shape == (2, 3)
    conv = core.Conv2DLSTM(np.array([4, 4, 2]), np.int64(3), np.array([3, 3]))
    assert conv(tf.ones([1, 4, 4, 2]), conv.initial_state(1))[0].shape == (1, 4, 4, 3)
    assert core.Conv2DLSTM((np.int64(4), 4, 2), 3, np.int8(1)).initial_state(1).hidden.shape == (1, 4, 4, 3)
    with pytest.raises(ValueError, match="LSTM 'lstm': hidden_size must be a positive int, got True"):
        core.LSTM(True)
